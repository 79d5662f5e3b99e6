#!/usr/bin/env bash
# Check and grade the submissions a pull request changes. The workflow
# grade-submissions.yml runs this script and tests/test_workflow.py runs the very same file, so
# what is tested is what CI does.
#
# Environment:
#   BASE_REF     required: the ref the pull request merges into (CI: origin/<base branch>)
#   SUMMARY      Markdown file to append the report to (default: $GITHUB_STEP_SUMMARY, else none)
#   SUBMISSIONS  submissions folder, relative to the repository root (default: submissions)
#   BENCHMARK    benchmark folder (default: the embedded one)
#   PYTHON       interpreter with the harness installed (default: python)
#
# Writes results.json, leaderboard.md (the merged leaderboard: unchanged submissions come from the
# base branch's results.json) and grade.xml at the repository root.
# Exit status: 0 graded (error rows, say a track left out, are reported, not fatal); 1 a changed
# submission fails `harness check`; 2 the check or the grading could not run.
set -euo pipefail

base="${BASE_REF:?set BASE_REF to the ref the pull request merges into, e.g. origin/main}"
summary="${SUMMARY:-${GITHUB_STEP_SUMMARY:-/dev/null}}"
submissions="${SUBMISSIONS:-submissions}"
submissions="${submissions#./}"
submissions="${submissions%/}"
python="${PYTHON:-python}"
benchmark=()
if [[ -n "${BENCHMARK:-}" ]]; then
  benchmark=(--benchmark "$BENCHMARK")
fi
cd "$(git rev-parse --show-toplevel)"
if ! git rev-parse --verify --quiet "$base^{commit}" > /dev/null; then
  echo "BASE_REF $base is not a commit here (fetch with fetch-depth: 0)" >&2
  exit 2
fi

# Changed submissions: the first folder level under $submissions of every file changed since the
# base (committed or not) or untracked; the same rule as `harness grade --changed-since`.
mapfile -t changed < <(
  { git diff --name-only --no-renames "$base" -- "$submissions"
    git ls-files --others --exclude-standard -- "$submissions"; } |
    awk -v prefix="$submissions/" 'index($0, prefix) == 1 {
      rest = substr($0, length(prefix) + 1); if (index(rest, "/")) print substr(rest, 1, index(rest, "/") - 1) }' |
    sort -u)

{
  echo "## Submission checks"
  echo
} >> "$summary"
if [[ ${#changed[@]} -eq 0 ]]; then
  echo "No submission folder changed since $base." | tee -a "$summary"
fi

invalid=()
broken=()
for name in "${changed[@]}"; do
  folder="$submissions/$name"
  if [[ ! -d "$folder" ]]; then
    echo "- $name: removed" >> "$summary"
    continue
  fi
  echo "::group::harness check $folder"
  status=0
  output="$("$python" -m harness check "$folder" "${benchmark[@]}" 2>&1)" || status=$?
  echo "$output"
  echo "::endgroup::"
  case "$status" in
    0) echo "- $name: valid" >> "$summary" ;;
    1) invalid+=("$name")
       echo "::error::submission $name is invalid; run: python -m harness check $folder"
       { echo "- **$name: invalid**"; echo; echo '```'; echo "$output"; echo '```'; } >> "$summary" ;;
    *) broken+=("$name")
       { echo "- $name: the check could not run (exit $status)"; echo; echo '```'
         echo "$output"; echo '```'; } >> "$summary" ;;
  esac
done
echo >> "$summary"
if [[ ${#broken[@]} -gt 0 ]]; then
  echo "harness check could not run for: ${broken[*]}" >&2
  exit 2
fi
if [[ ${#invalid[@]} -gt 0 ]]; then
  echo "invalid submissions: ${invalid[*]}" >&2
  exit 1
fi

# Unchanged entries come from the base branch's results.json: the pull request's own copy could
# have been edited along with the submission.
baseline=()
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
if git cat-file -e "$base:results.json" 2>/dev/null; then
  git show "$base:results.json" > "$scratch/base-results.json"
  baseline=(--baseline "$scratch/base-results.json")
fi

status=0
"$python" -m harness grade "$submissions" --changed-since "$base" --summary-md "$summary" \
  --junitxml grade.xml "${benchmark[@]}" "${baseline[@]}" || status=$?
case "$status" in
  0) ;;
  1) echo "::warning::some tracks have error rows; see the job summary" ;;
  *) echo "harness grade failed (exit $status)" >&2
     exit 2 ;;
esac
