#!/usr/bin/env bash
# Grade the open pull requests of a contest on the hidden data, quota permitting, and answer each
# on its pull request. The workflow contest-grade.yml runs this script on the organizers' own
# runner, on a schedule; tests/contest/test_contest_ci.py runs the very same file against local
# git repositories and a stand-in for `gh`.
#
# It runs in a checkout of the default branch: the grader and this script are the organizers'.
# Of each pull request it takes one thing, by commit: the head's submission folder, which
# `harness contest pr` reads out of git (never a checkout, never a file the pull request's own
# job wrote) and grades in the sandbox. The contest file, the hidden benchmark, the split and the
# ledger live outside the checkout (CONTEST), where no pull request can write. A head commit the
# ledger has answered is skipped, so polling again answers nothing twice.
#
# Environment:
#   CONTEST      required: the contest file (its state folder and benchmark beside it)
#   REPO_DIR     the checkout to fetch pull requests into (default: .)
#   PYTHON       interpreter with the harness installed (default: python)
#   CONTEST_NOW  the clock, for rehearsals and tests (default: now)
#   GH           the GitHub CLI (default: gh; it reads GH_TOKEN)
#
# Exit status: 0 every pull request answered or skipped; 2 one could not be handled (the others
# still are; the log says which).
set -euo pipefail

contest="${CONTEST:?set CONTEST to the contest file}"
repo_dir="${REPO_DIR:-.}"
python="${PYTHON:-python}"
gh="${GH:-gh}"
now=()
if [ -n "${CONTEST_NOW:-}" ]; then now=(--now "$CONTEST_NOW"); fi

status=0
listing="$(mktemp)"
trap 'rm -f "$listing"' EXIT
"$gh" pr list --state open --limit 200 \
    --json number,headRefOid,baseRefOid,author \
    --jq '.[] | "\(.number) \(.headRefOid) \(.baseRefOid) \(.author.login)"' > "$listing"
while read -r number head base login; do
    # Everything here came from the API, where a pull request's author chose the branch and the
    # text: only numbers, commit ids and logins of GitHub's own shape go any further.
    if ! [[ "$number" =~ ^[0-9]+$ && "$head" =~ ^[0-9a-f]{40}$ && "$base" =~ ^[0-9a-f]{40}$ \
            && "$login" =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,38}$ ]]; then
        echo "contest-poll: skipped a pull request listed in an unexpected shape" >&2
        status=2
        continue
    fi
    if ! git -C "$repo_dir" fetch --quiet --no-tags origin \
            "+refs/pull/$number/head:refs/contest/pr-$number" "$base" 2>/dev/null; then
        echo "contest-poll: #$number: cannot fetch its commits" >&2
        status=2
        continue
    fi
    reply="$(mktemp)"
    rm -f "$reply"
    code=0
    "$python" -m harness contest pr "$contest" --repo "$repo_dir" --base "$base" \
        --head "$head" --login "$login" --reply "$reply" "${now[@]}" || code=$?
    if [ -s "$reply" ]; then
        "$gh" pr comment "$number" --body-file "$reply"
    fi
    rm -f "$reply"
    if [ "$code" -gt 1 ]; then
        echo "contest-poll: #$number: the grader could not answer (exit $code)" >&2
        status=2
    fi
done < "$listing"
exit "$status"
