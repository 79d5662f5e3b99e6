"""Contest HDF5 format, track files and manifests: every bad input is one line naming the file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from harness.definitions.data import DataStore, read_contest_file, sha256_file, write_contest_file
from harness.definitions.submissions import load_submission
from harness.definitions.tracks import DataFile, load_benchmark, parse_scale
from harness.errors import BenchmarkError, SubmissionError
from tests.definitions.conftest import IMAGES, LABELS, h5


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_channels_first_in_any_dtype_reads_as_channels_last_uint8(tmp_path, dtype):
    path = h5(tmp_path / "a.h5", IMAGES.transpose(0, 3, 1, 2).astype(dtype))
    data = read_contest_file(DataFile(path), num_classes=3)
    assert data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, IMAGES)
    np.testing.assert_array_equal(data.labels, LABELS)


def test_channels_last_files_are_accepted(tmp_path):
    data = read_contest_file(DataFile(h5(tmp_path / "a.h5", IMAGES)), num_classes=3)
    np.testing.assert_array_equal(data.images, IMAGES)


def test_non_integral_float_pixels_are_kept_as_float(tmp_path):
    pixels = IMAGES.transpose(0, 3, 1, 2).astype(np.float32) * 0.99 + 0.5
    data = read_contest_file(DataFile(h5(tmp_path / "a.h5", pixels)), num_classes=3)
    assert data.images.dtype == np.float32


@pytest.mark.parametrize(("data", "label", "message"), [
    (IMAGES[:, :50], LABELS, "expected (N, 3, 55, 47)"),
    (IMAGES[..., 0], LABELS, "expected (N, 3, 55, 47)"),
    (IMAGES, LABELS[:4], "'label' has shape (4,)"),
    (IMAGES, LABELS + 5, "labels span [5, 7]"),
    (IMAGES, LABELS + 0.5, "non-integer"),
    (IMAGES.astype(np.float32) / 255, LABELS, "not 0..1"),
    (IMAGES.astype(np.float32) * 2, LABELS, "expected 0..255"),
    (np.full(IMAGES.shape, np.nan, dtype=np.float32), LABELS, "NaN"),
    (IMAGES, None, "no 'label' dataset"),
])
def test_malformed_files_fail_with_one_line_naming_the_file(tmp_path, data, label, message):
    path = h5(tmp_path / "bad.h5", data, label)
    with pytest.raises(BenchmarkError) as info:
        read_contest_file(DataFile(path), num_classes=3)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_and_missing_files(tmp_path):
    good = h5(tmp_path / "good.h5", IMAGES)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(BenchmarkError, match="not a readable HDF5"):
        read_contest_file(DataFile(truncated), 3)
    with pytest.raises(BenchmarkError, match="not found"):
        read_contest_file(DataFile(tmp_path / "absent.h5"), 3)


def test_sha256_and_size_are_checked_against_the_track_file(tmp_path):
    path = h5(tmp_path / "a.h5", IMAGES)
    digest = sha256_file(path)
    assert read_contest_file(DataFile(path, sha256=digest, size=6), 3).sha256 == digest
    with pytest.raises(BenchmarkError, match="does not match"):
        read_contest_file(DataFile(path, sha256="0" * 64), 3)
    with pytest.raises(BenchmarkError, match="holds 6 images; the track file says 7"):
        read_contest_file(DataFile(path, size=7), 3)


def test_written_files_are_byte_identical_and_round_trip(tmp_path):
    first = write_contest_file(tmp_path / "a.h5", IMAGES, LABELS)
    second = write_contest_file(tmp_path / "b.h5", IMAGES, LABELS)
    assert first == second
    with h5py.File(tmp_path / "a.h5") as handle:
        assert handle["data"].shape == (6, 3, 55, 47)
    np.testing.assert_array_equal(read_contest_file(DataFile(tmp_path / "a.h5"), 3).images,
                                  IMAGES)


def test_data_store_reads_each_file_once(tmp_path):
    path = h5(tmp_path / "a.h5", IMAGES)
    store = DataStore()
    first = store.get(DataFile(path), 3)
    path.unlink()
    assert store.get(DataFile(path), 3) is first


TRACK = """
name = "t"
badnet = "bd.h5"
input_scale = "1/255"
num_classes = 3
validation = {{ file = "val.h5" }}
test = {{ file = "test.h5" }}
{poisoned}
"""
POISONED = '[[poisoned]]\ntrigger = "sunglasses"\ntarget = 0\nfile = "p.h5"\nlabels = "true"\n'


def benchmark(tmp_path: Path, text: str) -> Path:
    (tmp_path / "tracks").mkdir()
    (tmp_path / "tracks" / "t.toml").write_text(text)
    return tmp_path


def test_track_file_is_parsed(tmp_path):
    bench = load_benchmark(benchmark(tmp_path, TRACK.format(poisoned=POISONED)))
    track = bench.track("t")
    assert track.input_scale == pytest.approx(1 / 255)
    assert track.poisoned[0].trigger == "sunglasses" and track.poisoned[0].labels == "true"
    assert track.test.path == tmp_path / "test.h5"
    assert bench.name == tmp_path.name


@pytest.mark.parametrize(("poisoned", "message"), [
    ("", "at least one [[poisoned]]"),
    (POISONED.replace("target = 0", "target = 3"), "target 3 outside [0, 3)"),
    (POISONED.replace('labels = "true"', 'labels = "maybe"'), "labels must be"),
    (POISONED.replace('trigger = "sunglasses"\n', ""), "missing key 'trigger'"),
])
def test_bad_track_files_fail_naming_the_file(tmp_path, poisoned, message):
    root = benchmark(tmp_path, TRACK.format(poisoned=poisoned))
    with pytest.raises(BenchmarkError) as info:
        load_benchmark(root)
    assert message in str(info.value) and "t.toml" in str(info.value)


RETUNING = '[retuning]\nfile = "r.h5"\nsize = 115\n'


def test_retuning_set_and_clean_model_are_parsed(tmp_path):
    text = TRACK.format(poisoned=POISONED + RETUNING)
    text = text.replace("validation =", 'clean_model = "models/clean.h5"\nvalidation =')
    track = load_benchmark(benchmark(tmp_path, text)).track("t")
    assert track.retuning.path == tmp_path / "r.h5" and track.retuning.size == 115
    assert track.retuning.hidden  # the attacker's data: hidden unless marked otherwise
    assert track.clean_model == tmp_path / "models" / "clean.h5"
    assert track.data_files()[-1] == track.retuning  # sha-checked, exported or kept back


def test_retuning_set_and_clean_model_are_optional(tmp_path):
    track = load_benchmark(benchmark(tmp_path, TRACK.format(poisoned=POISONED))).track("t")
    assert track.retuning is None and track.clean_model is None
    assert len(track.data_files()) == 3


@pytest.mark.parametrize(("insert", "retuning", "message"), [
    ("clean_model = 3\n", "", "'clean_model' must be a path (a string), got 3"),
    ('clean_model = ["a.h5"]\n', "", "'clean_model' must be a path"),
    ("", '[retuning]\nsize = 4\n', "[retuning]: missing key 'file'"),
    ("", '[retuning]\nfile = "r.h5"\nhidden = "no"\n', "'hidden' must be true or false"),
    ("", 'retuning = "r.h5"\n', "[retuning]: expected a table"),
])
def test_bad_retuning_or_clean_model_fails_in_one_line_naming_the_file(tmp_path, insert, retuning,
                                                                      message):
    text = TRACK.format(poisoned=POISONED).replace("validation =", insert + "validation =")
    if retuning.startswith("retuning ="):  # a top-level key, not a table
        text = text.replace("validation =", retuning + "validation =")
    else:
        text += retuning
    with pytest.raises(BenchmarkError) as info:
        load_benchmark(benchmark(tmp_path, text))
    assert message in str(info.value) and "t.toml" in str(info.value)
    assert "\n" not in str(info.value)


def test_scale_accepts_fractions_and_numbers():
    assert parse_scale("1/255", "x") == pytest.approx(1 / 255)
    assert parse_scale(1, "x") == 1.0
    for bad in ("abc", "1/0", -1, True):
        with pytest.raises(BenchmarkError):
            parse_scale(bad, "x")


def manifest(tmp_path: Path, text: str, files: tuple[str, ...] = ("m.h5",)) -> Path:
    folder = tmp_path / "team-a"
    folder.mkdir()
    for name in files:
        (folder / name).write_bytes(b"x")
    (folder / "submission.toml").write_text(text)
    return folder / "submission.toml"


def test_manifest_entries_of_each_kind(tmp_path):
    path = manifest(tmp_path, """
team = "A"
method = "fine-pruning"
reference = true
[tracks.one]
model = "m.h5"
[tracks.two]
weights = "w.h5"
architecture = "deepid"
input_scale = 1
[tracks.three]
eval = "eval.py"
args = ["m.h5", "{image}"]
""", files=("m.h5", "w.h5", "eval.py"))
    sub = load_submission(path)
    assert sub.name == "team-a" and sub.reference and sub.team == "A"
    assert sub.entry("one").kind == "model"
    assert sub.entry("two").input_scale == 1.0
    assert sub.entry("three").args == ("m.h5", "{image}")
    with pytest.raises(SubmissionError, match=r"no \[tracks.four\] entry"):
        sub.entry("four")


@pytest.mark.parametrize(("table", "message"), [
    ('model = "absent.h5"', "not found"),
    ('model = "../outside.h5"', "outside the submission folder"),
    ('model = "m.h5"\nweights = "m.h5"', "exactly one of"),
    ('weights = "m.h5"', "architecture"),
    ('eval = "m.h5"\nargs = ["x"]', "{image}"),
])
def test_a_bad_entry_fails_only_its_own_track(tmp_path, table, message):
    (tmp_path / "outside.h5").write_bytes(b"x")
    sub = load_submission(manifest(tmp_path, f'[tracks.bad]\n{table}\n[tracks.good]\n'
                                             'model = "m.h5"\n'))
    assert sub.entry("good").kind == "model"
    with pytest.raises(SubmissionError) as info:
        sub.entry("bad")
    assert message in str(info.value)


def test_an_unparsable_manifest_fails_every_track(tmp_path):
    sub = load_submission(manifest(tmp_path, "team = [unclosed"))
    with pytest.raises(SubmissionError, match="cannot parse"):
        sub.entry("anything")


def test_the_digest_follows_no_link_opens_no_fifo_and_keeps_regular_files_as_they_were(tmp_path):
    """Regular files hash as they always did (records keyed by old digests hold); a link is its
    target's text, never followed (a link to /proc/self/mem or a loop is read in no time); a
    FIFO is listed, never opened (it would block); names need not be UTF-8."""
    import hashlib
    import os

    from harness.definitions.submissions import submission_digest

    folder = tmp_path / "team"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"abc")
    (folder / "sub" / "b.txt").write_bytes(b"")
    old = hashlib.sha256()
    for name, data in ((b"a.txt", b"abc"), (b"sub/b.txt", b"")):
        old.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big") + data)
    assert submission_digest(folder) == old.hexdigest()
    os.symlink("/proc/self/mem", folder / "mem")
    os.symlink("loop", folder / "loop")
    os.mkfifo(folder / "pipe")
    (Path(os.fsdecode(bytes(folder) + b"/caf\xe9"))).write_bytes(b"x")
    linked = submission_digest(folder)
    assert linked != old.hexdigest()
    (folder / "mem").unlink()
    os.symlink("/proc/self/environ", folder / "mem")
    assert submission_digest(folder) != linked  # the link's target, not what it points to


def test_a_manifest_that_is_a_link_or_a_fifo_is_refused_unread(tmp_path):
    import os

    folder = tmp_path / "team"
    folder.mkdir()
    os.mkfifo(folder / "submission.toml")
    assert "is not a regular file" in load_submission(folder / "submission.toml").problem
    (folder / "submission.toml").unlink()
    os.symlink("/dev/zero", folder / "submission.toml")
    assert "symbolic link out of the submission folder" in \
        load_submission(folder / "submission.toml").problem
