"""Every subcommand answers a bad argument the same way: one ``harness: error:`` line on stderr,
exit status 2, nothing written. Run in this process through :func:`harness.cli.main`, the one
place that answers them (fast: no model is loaded, no submission runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.sandbox import isolation

NOWHERE = "/nonexistent"


@pytest.mark.parametrize(("argv", "message"), [
    (["grade", NOWHERE], f"{NOWHERE}: no such folder"),
    (["check", NOWHERE], f"{NOWHERE} does not exist; scaffold it with"),
    (["check", "submissions/no-defense", "--benchmark", NOWHERE], "benchmark folder not found"),
    (["new", "../escape", "--dir", "OUT"], "not a safe submission name"),
    (["new", "team", "--dir", "OUT", "--benchmark", NOWHERE], "benchmark folder not found"),
    (["render", "OUT/results.json", "--out", "OUT"], "cannot read results file"),
    (["export-public", "OUT", "--benchmark", NOWHERE], "benchmark folder not found"),
    (["env", "build", NOWHERE], f"{NOWHERE}: no such folder"),
    (["env", "build", "submissions", "--benchmark", NOWHERE], "benchmark folder not found"),
    (["benchmark", "build", "--only", "nope", "--out", "OUT"], "no BadNet 'nope' to rebuild"),
    (["reference", "build", "--track", "nope", "--out", "OUT"], "no track 'nope'"),
    (["reference", "build", "--defense", "nope", "--out", "OUT"], "no defense 'nope'"),
    (["reference", "build", "--benchmark", NOWHERE, "--out", "OUT"], "benchmark folder not found"),
    (["bench", "--track", "nope"], "no track 'nope'"),
    (["bench", "--end-to-end", NOWHERE], f"{NOWHERE}: no such folder"),
    (["contest", "status", NOWHERE], "cannot read contest file"),
    (["contest", "board", "data/contest.toml", "--out", "OUT", "--now", "yesterday"],
     "--now: not an ISO time"),
    (["contest", "final", "data/contest.toml", "--out", "OUT", "--now", "2027-01-10T00:00:00Z"],
     "the final board comes after"),
])
def test_a_bad_argument_is_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main([str(out) if arg == "OUT" else arg.replace("OUT/", f"{out}/")
                 for arg in argv]) == 2
    printed = capsys.readouterr()
    assert printed.err.startswith("harness: error: ") and printed.err.count("\n") == 1, printed
    assert message in printed.err and not printed.out
    assert not out.exists()  # refused before anything is written


def test_no_sandbox_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``harness sandbox`` takes no argument; a machine without a sandbox is answered alike."""
    monkeypatch.setattr(isolation, "detect", lambda: isolation.Mode(
        bwrap=None, privileged=False, note="bubblewrap cannot create namespaces"))
    assert main(["sandbox"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness: error: no sandbox: bubblewrap cannot create namespaces")
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv", [
    ["grade", "--sample", "abc"],
    ["grade", "--no-such-option"],
    ["contest", "nope", "data/contest.toml"],
    ["contest", "submit", "data/contest.toml", "submissions/no-defense"],  # --login missing
    ["no-such-command"],
    [],
])
def test_a_malformed_command_line_is_one_line_and_exit_2(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """What argparse itself rejects is answered alike: one line naming the command's --help."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    printed = capsys.readouterr()
    assert printed.err.count("\n") == 1 and ": error: " in printed.err, printed
    assert printed.err.rstrip().endswith("--help)") and not printed.out


def test_grade_answers_a_missing_benchmark_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grade", "submissions", "--benchmark", NOWHERE]) == 2
    err = capsys.readouterr().err
    assert err == f"harness: error: {NOWHERE}: benchmark folder not found\n"
