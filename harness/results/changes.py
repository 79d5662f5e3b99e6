"""Which submissions changed since a git ref: what a pull request's grading job must grade.

A submission counts as changed when any file under its folder differs between the ref and the
working tree (``git diff --name-only REF``: committed, staged or not) or is untracked and not
ignored. Everything else can reuse an earlier record.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from harness.errors import HarnessError


def _git(args: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              check=False)
    except OSError as exc:
        raise HarnessError(f"cannot run git: {exc}") from None
    if done.returncode != 0:
        raise HarnessError(f"git {' '.join(args[:2])} failed in {cwd}: "
                           f"{done.stderr.strip() or done.returncode}")
    return done.stdout


def changed_files(ref: str, folders: Iterable[Path]) -> set[Path]:
    """Absolute paths of files under ``folders`` changed since ``ref`` or untracked.

    ``--no-renames`` lists both sides of a rename, so a folder a file moved out of counts as
    changed too; ``-z`` keeps unusual file names unquoted.
    """
    folders = [folder.resolve() for folder in folders]
    if not folders:
        return set()
    top = Path(_git(["rev-parse", "--show-toplevel"], folders[0]).strip()).resolve()
    try:
        _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], top)
    except HarnessError:
        raise HarnessError(f"--changed-since: {ref!r} is not a commit in {top}") from None
    outside = [str(folder) for folder in folders if not folder.is_relative_to(top)]
    if outside:
        raise HarnessError(f"--changed-since: {', '.join(outside)} not in the git work tree {top}")
    specs = [folder.relative_to(top).as_posix() or "." for folder in folders]
    diff = _git(["diff", "--name-only", "--no-renames", "-z", ref, "--", *specs], top)
    untracked = _git(["ls-files", "--others", "--exclude-standard", "-z", "--", *specs], top)
    return {top / name for name in (diff + untracked).split("\0") if name}
