"""``python -m harness check`` and ``python -m harness new`` as a pull-request author runs them,
on two tracks of the tiny benchmark."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from harness.definitions.tracks import load_benchmark
from tests.conftest import benchmark_subset, run_harness, write_submission

TRACKS = ["anonymous_1", "sunglasses"]


@pytest.fixture(scope="module")
def bench(tiny_benchmark: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return benchmark_subset(tiny_benchmark, tmp_path_factory.mktemp("check") / "bench", TRACKS)


def lines(result, status: str) -> list[str]:
    """The report lines with this status (``ok`` or ``FAIL``)."""
    return [line for line in result.stdout.splitlines() if line.split(" ", 1)[0] == status]


def test_fresh_scaffold_fails_saying_what_to_fill_in_then_passes_once_filled(bench, tmp_path):
    made = run_harness("new", "team-a", "--dir", "subs", "--benchmark", bench, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "subs" / "team-a"
    assert "python -m harness check subs/team-a" in made.stdout
    text = (folder / "submission.toml").read_text()
    assert set(tomllib.loads(text)["tracks"]) == set(TRACKS)
    for form in ('model = "sunglasses.h5"', 'weights = "', 'architecture = "deepid"',
                 'eval = "eval.py"', 'args = ["{image}"]'):
        assert form in text
    assert "harness check subs/team-a" in (folder / "README.md").read_text()

    fresh = run_harness("check", "subs/team-a", "--benchmark", bench, cwd=tmp_path)
    assert fresh.returncode == 1 and "Traceback" not in fresh.stdout + fresh.stderr
    failed = lines(fresh, "FAIL")
    assert 'FAIL  manifest: set team = "..." and method = "..." in submission.toml' in failed[0]
    for track in TRACKS:
        assert any(line.startswith(f"FAIL  {track}: entry:") and
                   'found none; e.g. model = "<file>.h5"' in line for line in failed), failed
    assert fresh.stdout.splitlines()[-1] == "3 of 4 checks failed; fix them and run the check again"

    # Filled in as the comments say: a model file for one track, weights for the other.
    import keras

    badnets = {t.name: t.badnet for t in load_benchmark(bench).tracks}
    (folder / "sunglasses.h5").write_bytes(badnets["sunglasses"].read_bytes())
    keras.models.load_model(badnets["anonymous_1"], compile=False).save_weights(
        folder / "anonymous_1.weights.h5")
    text = text.replace('team = ""', 'team = "Team A"').replace('method = ""', 'method = "none"')
    text = text.replace('# model = "sunglasses.h5"', 'model = "sunglasses.h5"')
    text = text.replace('# model = "anonymous_1.h5"',
                        'weights = "anonymous_1.weights.h5"\narchitecture = "deepid"')
    (folder / "submission.toml").write_text(text)
    filled = run_harness("check", "subs/team-a", "--benchmark", bench, cwd=tmp_path)
    assert filled.returncode == 0, filled.stdout + filled.stderr
    assert not lines(filled, "FAIL")
    assert "ok    sunglasses: entry: model sunglasses.h5" in filled.stdout
    assert "ok    anonymous_1: entry: weights anonymous_1.weights.h5" in filled.stdout
    for track in TRACKS:
        assert f"ok    {track}: loads and answers: 8 validation images, labels in 0..10" in \
            filled.stdout
    assert filled.stdout.splitlines()[-1].startswith("all 6 checks passed")


def test_new_refuses_existing_folders_and_unsafe_names(bench, tmp_path):
    (tmp_path / "submissions" / "taken").mkdir(parents=True)
    (tmp_path / "submissions" / "taken" / "model.h5").write_bytes(b"work")
    taken = run_harness("new", "taken", "--benchmark", bench, cwd=tmp_path)
    assert taken.returncode == 2 and "submissions/taken already exists" in taken.stderr
    assert (tmp_path / "submissions" / "taken" / "model.h5").read_bytes() == b"work"
    for name in ("../escape", "a b", ".hidden", "x" * 65, "tëam"):
        refused = run_harness("new", name, "--benchmark", bench, cwd=tmp_path)
        assert refused.returncode == 2, name
        assert refused.stderr.startswith("harness: error: ") and "safe submission name" in \
            refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "submissions").iterdir()) == ["taken"]


def test_missing_file_missing_entry_and_unknown_track_fail_by_name(bench, tmp_path):
    write_submission(tmp_path, "broken", {"sunglasses": {"model": "sunglasses.h5"},
                                          "sunglases": {"model": "sunglasses.h5"}})
    result = run_harness("check", "broken", "--benchmark", bench, cwd=tmp_path)
    assert result.returncode == 1
    failed = lines(result, "FAIL")
    assert "FAIL  [tracks.sunglases]: not a track of this benchmark (anonymous_1, sunglasses); " \
           "rename or remove it" in failed
    assert any(line.startswith("FAIL  anonymous_1: no [tracks.anonymous_1] table in "
                               'submission.toml; add one with model = "<file>"') for line in failed)
    assert "FAIL  sunglasses: entry: submission.toml [tracks.sunglasses]: file 'sunglasses.h5' " \
           "not found" in failed
    assert result.stdout.splitlines()[-1].startswith("3 of 5 checks failed")


def test_model_with_the_wrong_number_of_classes_fails(bench, tmp_path):
    from harness.nets.deepid import build_deepid, save_legacy_h5

    model = tmp_path / "wrong.h5"
    save_legacy_h5(build_deepid(num_classes=12), model)  # the tracks have 10 identities
    write_submission(tmp_path, "wrong", {t: {"model": "wrong.h5"} for t in TRACKS},
                     {"wrong.h5": model})
    result = run_harness("check", "wrong", "--benchmark", bench, cwd=tmp_path)
    assert result.returncode == 1
    for track in TRACKS:
        [line] = [line for line in lines(result, "FAIL") if line.startswith(f"FAIL  {track}:")]
        assert line.startswith(f"FAIL  {track}: loads and answers: ")
        assert "(None, 12)" in line and "expected (None, 10) or (None, 11)" in line, line
        assert str(tmp_path) not in line  # paths relative to the submission, as on the board


def test_unparsable_manifest_and_missing_folder_fail(bench, tmp_path):
    folder = tmp_path / "garbled"
    folder.mkdir()
    (folder / "submission.toml").write_text('team = "A"\nmethod = \n')
    garbled = run_harness("check", "garbled", "--benchmark", bench, cwd=tmp_path)
    assert garbled.returncode == 1
    assert lines(garbled, "FAIL") == [garbled.stdout.splitlines()[2]]
    assert garbled.stdout.splitlines()[2].startswith("FAIL  manifest: submission.toml: cannot "
                                                     "parse: ")
    missing = run_harness("check", "subs/nobody", "--benchmark", bench, cwd=tmp_path)
    assert missing.returncode == 2 and not missing.stdout  # a usage error, not a failed check
    assert missing.stderr == ("harness: error: subs/nobody does not exist; scaffold it with: "
                              "python -m harness new nobody --dir subs\n")
    (tmp_path / "empty").mkdir()
    empty = run_harness("check", "empty", "--benchmark", bench, cwd=tmp_path)
    assert empty.returncode == 1 and "FAIL  folder: no submission.toml in empty" in empty.stdout


def test_usage_and_benchmark_errors_exit_2(bench, tmp_path):
    assert run_harness("check", cwd=tmp_path).returncode == 2
    (tmp_path / "x").mkdir()
    nowhere = run_harness("check", "x", "--benchmark", tmp_path / "nowhere", cwd=tmp_path)
    assert nowhere.returncode == 2
    assert nowhere.stderr.strip().endswith("benchmark folder not found")


def test_hostile_manifest_text_is_reported_on_one_line_each(tmp_path, capsys) -> None:
    """A track key with a newline and a workflow command, file names with terminal escapes: each
    check is still one line, its control characters escaped, and nothing it quotes starts a line
    (CI echoes the report into its log, where a line starting ``::`` is a command)."""
    from harness.cli.check import check_submission
    from harness.definitions.tracks import load_bundle
    from tests.conftest import REPO

    injected = "x\n::error title=Grader::All submissions passed"
    folder = write_submission(tmp_path, "evil", {
        injected: {"model": "m.h5"},
        "sunglasses": {"model": "\x1b]8;;http://evil.example\x07m\x1b[31m.h5"},
    }, team="\x9b2J", method="ok")
    for check in check_submission(folder, load_bundle(REPO / "data")):
        print(check.line())
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert not any(line.startswith("::") for line in lines), out
    assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in out.replace("\n", "")), out
    assert "FAIL  [tracks.x ::error title=Grader::All submissions passed]: not a track" in out
    assert ("FAIL  sunglasses: entry: submission.toml [tracks.sunglasses]: the path "
            "'\\x1b]8;;http://evil.example\\x07m\\x1b[31m.h5' holds a control character") in lines
