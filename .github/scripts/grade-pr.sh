#!/usr/bin/env bash
# Check and grade the submission a pull request adds or changes. The workflow
# grade-submissions.yml runs this script and tests/cli/test_workflow.py runs the very same file, so
# what is tested is what CI does.
#
# It runs in a checkout of the BASE branch: the grader, this script, the track files, the
# environments and the baseline results are the base's. From the pull request's own checkout
# (PR_DIR) it takes one thing: the submission folder the pull request adds or changes. Every
# other file the pull request changes is listed in the summary and never used, so a pull request
# cannot grade itself with edited code or data.
#
# Rules (one line each when broken, exit 1): one submission folder per pull request; a folder
# that exists on the base branch may only be changed by its owners, named in the base's
# .github/CODEOWNERS (`/submissions/<name>/ @user ...`); removing a folder is a maintainers'
# change.
#
# Environment:
#   BASE_REF     required: the base commit the pull request merges into (CI: its sha)
#   PR_DIR       required: a checkout of the pull request's head, with the base commit in it
#   PR_AUTHOR    the pull request's author (GitHub login), for the owners rule
#   SUMMARY      Markdown file to append the report to (default: $GITHUB_STEP_SUMMARY, else none)
#   SUBMISSIONS  submissions folder, relative to the repository root (default: submissions)
#   BENCHMARK    benchmark folder (default: the embedded one)
#   PYTHON       interpreter with the (base's) harness installed (default: python)
#
# Writes results.json, leaderboard.md (the merged leaderboard: unchanged submissions come from the
# base branch's results.json) and grade.xml at the repository root of the base checkout.
# Exit status: 0 graded (error rows, say a track left out, are reported, not fatal); 1 the pull
# request breaks a rule or its submission fails `harness check`; 2 the check or the grading could
# not run.
#
# Team text (folder and file names, manifests, the tools' output quoting them) is shown, never
# obeyed: the log shows the tools' output between ::stop-commands::TOKEN and ::TOKEN::, where
# GitHub runs no workflow command (TOKEN is random, so the output cannot resume them), and the
# summary shows names and output through harness/text.py, the grader's one policy for team text.
set -euo pipefail

base="${BASE_REF:?set BASE_REF to the commit the pull request merges into}"
pr_dir="$(cd "${PR_DIR:?set PR_DIR to a checkout of the pull request}" && pwd)"
author="${PR_AUTHOR:-}"
summary="${SUMMARY:-${GITHUB_STEP_SUMMARY:-/dev/null}}"
submissions="${SUBMISSIONS:-submissions}"
submissions="${submissions#./}"
submissions="${submissions%/}"
python="${PYTHON:-python}"
token="$("$python" -c 'import secrets; print(secrets.token_hex(16))')"
benchmark=()
if [[ -n "${BENCHMARK:-}" ]]; then
  benchmark=(--benchmark "$BENCHMARK")
fi
cd "$(git rev-parse --show-toplevel)"

# Each argument as one line of Markdown that shows it literally (no link, image, code or HTML).
md() {
  "$python" -c 'import sys; from harness.text import markdown
print("\n".join(map(markdown, sys.argv[1:])))' "$@"
}
# Standard input as a code block that no line of it can close.
fenced() {
  "$python" -c 'import sys; from harness.text import fenced; print(fenced(sys.stdin.read()))'
}
for where in . "$pr_dir"; do
  if ! git -C "$where" rev-parse --verify --quiet "$base^{commit}" > /dev/null; then
    echo "BASE_REF $base is not a commit in $where (fetch with fetch-depth: 0)" >&2
    exit 2
  fi
done
if [[ -n "$(git status --porcelain -- "$submissions")" ]]; then
  echo "the base checkout's $submissions has local changes; run in a clean checkout" >&2
  exit 2
fi

# What the pull request changes, against where it branched off the base. With core.quotePath
# (pinned: a runner's git config could turn it off) git writes a path holding a control
# character, a quote, a backslash or a non-ASCII byte in C quotes ("submissions/\033..."): such a
# path is never a submission folder here, only listed.
fork="$(git -C "$pr_dir" merge-base "$base" HEAD)"
mapfile -t files < <(git -C "$pr_dir" -c core.quotePath=true diff --name-only --no-renames \
                       "$fork" HEAD)
changed=()
outside=()
for file in "${files[@]}"; do
  if [[ "$file" == "$submissions"/*/* ]]; then
    rest="${file#"$submissions"/}"
    changed+=("${rest%%/*}")
  else
    outside+=("$file")
  fi
done
mapfile -t changed < <(printf '%s\n' "${changed[@]}" | sed '/^$/d' | sort -u)

{
  echo "## Submission checks"
  echo
  if [[ ${#outside[@]} -gt 0 ]]; then
    echo "Changed outside \`$submissions/\` (not used: this job runs the base branch's grader," \
         "tracks and data):"
    echo
    md "${outside[@]}" | sed 's/^/- /'
    echo
  fi
} >> "$summary"

refuse() {
  echo "::error::$1"
  echo "- **refused: $(md "$1")**" >> "$summary"
  exit 1
}

# The base's owners file: /submissions/<name>/ @owner ... (never the pull request's copy).
owns() {
  local name="$1" line path owner
  [[ -n "$author" && -f .github/CODEOWNERS ]] || return 1
  while read -r path line; do
    [[ "$path" == "/$submissions/$name/" || "$path" == "/$submissions/$name" ]] || continue
    for owner in $line; do
      [[ "$owner" == "@$author" ]] && return 0
    done
  done < <(grep -v '^[[:space:]]*#' .github/CODEOWNERS)
  return 1
}

if [[ ${#changed[@]} -gt 1 ]]; then
  refuse "the pull request changes ${#changed[@]} submission folders (${changed[*]}); submit one per pull request"
fi
if [[ ${#changed[@]} -eq 0 ]]; then
  echo "No submission folder changed since $base." | tee -a "$summary"
fi
for name in "${changed[@]}"; do
  if [[ ! -d "$pr_dir/$submissions/$name" ]]; then
    refuse "the pull request removes $submissions/$name; removing a submission is a maintainers' change"
  fi
  if git cat-file -e "$base:$submissions/$name" 2>/dev/null && ! owns "$name"; then
    refuse "$submissions/$name exists on the base branch and is not yours (.github/CODEOWNERS names its owners)"
  fi
  # The folder as the pull request has it, and nothing else of the pull request.
  rm -rf "${submissions:?}/$name"
  mkdir -p "$submissions"
  cp -a "$pr_dir/$submissions/$name" "$submissions/$name"
done

invalid=()
broken=()
for name in "${changed[@]}"; do
  folder="$submissions/$name"
  if [[ ! -d "$folder" ]]; then
    echo "- $(md "$name"): removed" >> "$summary"
    continue
  fi
  echo "::group::harness check $folder"
  status=0
  output="$("$python" -m harness check "$folder" "${benchmark[@]}" 2>&1)" || status=$?
  echo "::stop-commands::$token"
  echo "$output"
  echo "::$token::"
  echo "::endgroup::"
  shown="$(md "$name")"
  case "$status" in
    0) echo "- $shown: valid" >> "$summary" ;;
    1) invalid+=("$name")
       echo "::error::submission $name is invalid; run: python -m harness check $folder"
       { echo "- **$shown: invalid**"; echo; fenced <<< "$output"; } >> "$summary" ;;
    *) broken+=("$name")
       { echo "- $shown: the check could not run (exit $status)"; echo
         fenced <<< "$output"; } >> "$summary" ;;
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
echo "::stop-commands::$token"
"$python" -m harness grade "$submissions" --changed-since "$base" --summary-md "$summary" \
  --junitxml grade.xml "${benchmark[@]}" "${baseline[@]}" || status=$?
echo "::$token::"
case "$status" in
  0) ;;
  1) echo "::warning::some tracks have error rows; see the job summary" ;;
  *) echo "harness grade failed (exit $status)" >&2
     exit 2 ;;
esac
