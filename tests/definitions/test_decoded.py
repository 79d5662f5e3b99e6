"""Data sets decoded once per machine: a DataStore with a folder writes each set's arrays once,
named by the data file's content, and every later store (any process) memory-maps them."""

from __future__ import annotations

import mmap
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import harness.definitions.data
from harness.definitions.data import (
    DECODE_FORMAT,
    DataStore,
    decoded_paths,
    read_contest_file,
    sha256_file,
)
from harness.definitions.tracks import DataFile
from harness.errors import BenchmarkError
from tests.conftest import REPO
from tests.definitions.conftest import IMAGES, LABELS, h5


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The data files decoded from HDF5 from now on, in order."""
    calls: list[Path] = []
    decode = harness.definitions.data._decode

    def counted(spec: DataFile, num_classes: int):
        calls.append(spec.path)
        return decode(spec, num_classes)

    monkeypatch.setattr(harness.definitions.data, "_decode", counted)
    return calls


def channels_first(images: np.ndarray = IMAGES) -> np.ndarray:
    return images.transpose(0, 3, 1, 2)


def mapped(array: np.ndarray) -> bool:
    return isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap)


def test_decoded_once_then_memory_mapped_by_every_store(tmp_path, decodes):
    path = h5(tmp_path / "a.h5", channels_first().astype(np.float32))
    folder = tmp_path / "decoded"
    first = DataStore(folder).get(DataFile(path), 3)
    assert decodes == [path]
    images_file, labels_file = decoded_paths(folder.resolve(), sha256_file(path))
    assert images_file.name == f"{sha256_file(path)}-{DECODE_FORMAT}.images.npy"
    assert images_file.is_file() and labels_file.is_file()
    assert images_file.stat().st_mode & 0o777 == 0o644
    inode = images_file.stat().st_ino
    second = DataStore(folder).get(DataFile(path), 3)
    assert decodes == [path]  # not decoded again
    assert images_file.stat().st_ino == inode  # not written again
    memory = read_contest_file(DataFile(path), 3)
    for data in (first, second):
        assert mapped(data.images) and mapped(data.labels)
        assert not data.images.flags.writeable
        assert data.images.dtype == memory.images.dtype == np.uint8
        np.testing.assert_array_equal(data.images, memory.images)
        np.testing.assert_array_equal(data.labels, memory.labels)
        assert data.labels.dtype == memory.labels.dtype
        assert data.sha256 == memory.sha256 and data.path == path
    assert not list(folder.glob("*.tmp"))


def test_lossy_float_sets_stay_float_through_the_folder(tmp_path):
    pixels = channels_first().astype(np.float32) * 0.99 + 0.5
    path = h5(tmp_path / "a.h5", pixels)
    DataStore(tmp_path / "decoded").get(DataFile(path), 3)
    data = DataStore(tmp_path / "decoded").get(DataFile(path), 3)
    assert mapped(data.images) and data.images.dtype == np.float32
    np.testing.assert_array_equal(data.images, read_contest_file(DataFile(path), 3).images)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _garbage(path: Path) -> None:
    path.write_bytes(b"not an array")


def _other_count(path: Path) -> None:
    np.save(path, np.load(path)[:-1])


def _other_dtype(path: Path) -> None:
    np.save(path, np.load(path).astype(np.int32))


def _removed(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize("damage", [_truncate, _garbage, _other_count, _other_dtype, _removed])
@pytest.mark.parametrize("which", [0, 1], ids=["images", "labels"])
def test_a_damaged_decoded_file_is_written_again_never_used(tmp_path, decodes, damage, which):
    path = h5(tmp_path / "a.h5", channels_first())
    folder = tmp_path / "decoded"
    DataStore(folder).get(DataFile(path), 3)
    damage(decoded_paths(folder, sha256_file(path))[which])
    data = DataStore(folder).get(DataFile(path), 3)
    assert decodes == [path, path]
    assert mapped(data.images) and mapped(data.labels)
    np.testing.assert_array_equal(data.images, IMAGES)
    np.testing.assert_array_equal(data.labels, LABELS)
    DataStore(folder).get(DataFile(path), 3)  # whole again: read, not decoded
    assert decodes == [path, path]


def test_a_file_of_other_bytes_gets_its_own_decoded_files(tmp_path, decodes):
    path = h5(tmp_path / "a.h5", channels_first())
    folder = tmp_path / "decoded"
    DataStore(folder).get(DataFile(path), 3)
    before = decoded_paths(folder, sha256_file(path))
    path.unlink()
    h5(path, channels_first(255 - IMAGES))  # same path, other content
    data = DataStore(folder).get(DataFile(path), 3)
    assert decodes == [path, path]
    np.testing.assert_array_equal(data.images, 255 - IMAGES)
    assert decoded_paths(folder, data.sha256) != before
    assert all(p.is_file() for p in before)  # the old set is another key, left alone
    copy = h5(tmp_path / "elsewhere.h5", channels_first(255 - IMAGES))
    assert sha256_file(copy) == data.sha256  # same bytes under another path: the same files
    np.testing.assert_array_equal(DataStore(folder).get(DataFile(copy), 3).images, 255 - IMAGES)
    assert decodes == [path, path]


def _message(spec: DataFile, num_classes: int, store: DataStore | None = None) -> str:
    with pytest.raises(BenchmarkError) as info:
        if store is None:
            read_contest_file(spec, num_classes)
        else:
            store.get(spec, num_classes)
    return str(info.value)


def test_checks_are_those_of_an_in_memory_read_when_the_set_is_decoded_already(tmp_path):
    path = h5(tmp_path / "a.h5", channels_first())
    folder = tmp_path / "decoded"
    DataStore(folder).get(DataFile(path), 3)
    for spec, num_classes, expected in [
        (DataFile(path, sha256="0" * 64), 3, "does not match the track file's"),
        (DataFile(path), 2, "labels span [0, 2]; expected 0..1"),
        (DataFile(path, size=7), 3, "holds 6 images; the track file says 7"),
        (DataFile(tmp_path / "absent.h5"), 3, "data file not found"),
    ]:
        message = _message(spec, num_classes, DataStore(folder))
        assert expected in message and message == _message(spec, num_classes)


@pytest.mark.parametrize(("data", "label"), [
    (IMAGES.astype(np.float32) / 255, LABELS),
    (IMAGES, LABELS + 5),
    (IMAGES[:, :50], LABELS),
    (IMAGES, None),
])
def test_a_malformed_file_fails_as_in_memory_and_leaves_nothing_decoded(tmp_path, data, label):
    path = h5(tmp_path / "bad.h5", data, label)
    folder = tmp_path / "decoded"
    assert _message(DataFile(path), 3, DataStore(folder)) == _message(DataFile(path), 3)
    assert not list(folder.glob("*.npy")) and not list(folder.glob("*.tmp"))


def test_a_temporary_folder_is_made_on_first_use_and_removed_on_close(tmp_path):
    path = h5(tmp_path / "a.h5", channels_first())
    store = DataStore(temporary=True)
    folder = store.folder
    assert folder is not None and folder.is_dir()
    assert mapped(store.get(DataFile(path), 3).images)
    assert DataStore(folder).get(DataFile(path), 3).sha256 == sha256_file(path)
    store.close()
    assert not folder.exists()
    assert DataStore().folder is None  # no folder: decoded in memory, as before
    assert not mapped(DataStore().get(DataFile(path), 3).images)


CHILD = """
import sys, time
from pathlib import Path
import harness.definitions.data
from harness.definitions.data import DataStore
from harness.definitions.tracks import DataFile

path, folder, log, go = map(Path, sys.argv[1:])
decode = harness.definitions.data._decode

def slow(spec, num_classes):
    with open(log, "a") as handle:
        handle.write("decoded\\n")
    time.sleep(0.5)  # long enough for every process to arrive while the first writes
    return decode(spec, num_classes)

harness.definitions.data._decode = slow
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
data = DataStore(folder).get(DataFile(path), 3)
print(type(data.images).__name__, data.images.sum(), flush=True)
"""


def test_processes_starting_together_decode_and_write_once(tmp_path):
    path = h5(tmp_path / "a.h5", channels_first())
    folder, log, go = tmp_path / "decoded", tmp_path / "log", tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-c", CHILD, path, folder, log, go],
                                 stdout=subprocess.PIPE, text=True, cwd=REPO) for _ in range(3)]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    started = time.monotonic()
    go.touch()
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    assert log.read_text() == "decoded\n"
    assert set(outputs) == {f"memmap {IMAGES.sum()}\n"}
    assert time.monotonic() - started >= 0.5  # they did wait for the one that decoded
    assert len(list(folder.glob("*.npy"))) == 2 and not list(folder.glob("*.tmp"))
