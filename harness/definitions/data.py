"""Reading the contest's HDF5 data format, checked against the track file.

The contest files hold ``data`` as (N, 3, 55, 47) pixel values 0..255 (channels first, float in the
official files) and ``label`` as (N,). The grader keeps every set as channels-last uint8 (a quarter
of float32's memory) when that is lossless, and reads each file once per run; given a folder, it
decodes each file once per machine and memory-maps the result (:class:`DataStore`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from harness.definitions.tracks import DataFile
from harness.errors import BenchmarkError

IMAGE_HW = (55, 47)
DECODE_FORMAT = 1
"""Version of how a data file is decoded into the arrays a :class:`DataStore` shares (layout,
dtypes, the ``.npy`` files): bump it when that changes, so that no set decoded the old way is
taken for a new one."""


@dataclass(frozen=True)
class ContestSet:
    """Images (n, 55, 47, 3), channels last, uint8 when lossless, and integer labels."""

    path: Path
    images: np.ndarray
    labels: np.ndarray
    sha256: str

    def __len__(self) -> int:
        return len(self.labels)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Stream the file so hashing a 400 MB float set needs no 400 MB buffer."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _channels_last(data: h5py.Dataset, where: str) -> np.ndarray:
    shape = tuple(data.shape)
    if len(shape) != 4:
        raise BenchmarkError(f"{where}: 'data' has shape {shape}; expected (N, 3, 55, 47)")
    if shape[1:] == (3, *IMAGE_HW):
        return np.asarray(data).transpose(0, 2, 3, 1)
    if shape[1:] == (*IMAGE_HW, 3):
        return np.asarray(data)
    raise BenchmarkError(f"{where}: 'data' has shape {shape}; expected (N, 3, 55, 47)")


def _as_pixels(raw: np.ndarray, where: str) -> np.ndarray:
    if raw.dtype == np.uint8:
        return np.ascontiguousarray(raw)
    if not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
        raise BenchmarkError(f"{where}: 'data' has dtype {raw.dtype}; expected uint8 or float")
    values = raw.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        raise BenchmarkError(f"{where}: 'data' holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 255:
        raise BenchmarkError(f"{where}: pixel values span [{low:g}, {high:g}]; expected 0..255")
    if high <= 1.0:
        raise BenchmarkError(f"{where}: pixel values span [{low:g}, {high:g}]; the contest format "
                             "stores 0..255, not 0..1")
    rounded = np.round(values)
    if np.array_equal(rounded, values):
        return np.ascontiguousarray(rounded.astype(np.uint8))
    return np.ascontiguousarray(values)


def _labels(raw: np.ndarray, n: int, num_classes: int, where: str) -> np.ndarray:
    if raw.ndim != 1 or len(raw) != n:
        raise BenchmarkError(f"{where}: 'label' has shape {raw.shape}; expected ({n},)")
    if np.issubdtype(raw.dtype, np.floating):
        if not np.isfinite(raw).all() or not np.array_equal(np.round(raw), raw):
            raise BenchmarkError(f"{where}: 'label' holds non-integer values")
    elif not np.issubdtype(raw.dtype, np.integer):
        raise BenchmarkError(f"{where}: 'label' has dtype {raw.dtype}; expected integers")
    labels = raw.astype(np.int64)
    _check_range(labels, num_classes, where)
    return labels


def _check_range(labels: np.ndarray, num_classes: int, where: str) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise BenchmarkError(f"{where}: labels span [{labels.min()}, {labels.max()}]; expected "
                             f"0..{num_classes - 1}")


def read_contest_file(spec: DataFile, num_classes: int) -> ContestSet:
    """Read and validate one file; any problem is a one-line BenchmarkError naming the file."""
    digest = _checked_digest(spec)
    images, labels = _decode(spec, num_classes)
    _check_size(spec, len(labels))
    return ContestSet(path=spec.path, images=images, labels=labels, sha256=digest)


def _checked_digest(spec: DataFile) -> str:
    """The file's sha256, checked against the track file's."""
    where = str(spec.path)
    if not spec.path.is_file():
        raise BenchmarkError(f"{where}: data file not found")
    digest = sha256_file(spec.path)
    if spec.sha256 and digest != spec.sha256:
        raise BenchmarkError(f"{where}: sha256 {digest[:12]}... does not match the track file's "
                             f"{spec.sha256[:12]}...; the file is corrupt or from another build")
    return digest


def _decode(spec: DataFile, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of the file, checked (all but its digest and size)."""
    where = str(spec.path)
    try:
        with h5py.File(spec.path, "r") as handle:
            for key in ("data", "label"):
                if key not in handle:
                    raise BenchmarkError(f"{where}: no '{key}' dataset (has {sorted(handle)})")
            images = _as_pixels(_channels_last(handle["data"], where), where)
            labels = _labels(np.asarray(handle["label"]), len(images), num_classes, where)
    except BenchmarkError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchmarkError(f"{where}: not a readable HDF5 contest file ({exc})") from None
    return images, labels


def _check_size(spec: DataFile, n: int) -> None:
    if spec.size is not None and n != spec.size:
        raise BenchmarkError(f"{spec.path}: holds {n} images; the track file says {spec.size}")


def write_contest_file(path: Path, images: np.ndarray, labels: np.ndarray) -> str:
    """Write uint8 images (n, 55, 47, 3) in the contest layout; returns the file's sha256.

    No compression and no timestamps, so equal arrays give equal bytes (h5py's default
    ``track_times`` would stamp object headers with the write time).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w", track_order=False) as handle:
        handle.create_dataset("data", data=images.transpose(0, 3, 1, 2), track_times=False)
        handle.create_dataset("label", data=labels.astype(np.int64), track_times=False)
    tmp.replace(path)
    return sha256_file(path)


class DataStore:
    """Reads each data file once per run and hands the same arrays to every submission.

    Without a ``folder`` the sets are decoded into this process's memory. With one (the result
    cache's ``decoded/``, shared by a run's pytest-xdist workers and by later runs) each set is
    decoded once per machine: written there as two ``.npy`` files (images, labels) named by the
    data file's sha256 and :data:`DECODE_FORMAT` (:func:`decoded_paths`), written once
    (:func:`write_once`'s lock and atomic rename), and memory-mapped read-only by every process,
    so K processes hold a set once in the page cache instead of K times. The data file is still
    hashed and checked against the track file on every read, and the labels against the track's
    class count; decoded files that do not fit the data file (header, shape, dtype) are written
    again, never used. ``temporary=True``: a folder of its own, made on first use and removed by
    :meth:`close` (``harness grade -n K --no-cache``: the controller's, handed to its workers).
    """

    def __init__(self, folder: Path | None = None, *, temporary: bool = False) -> None:
        self._folder = folder.resolve() if folder is not None else None  # other processes read it
        self._temporary = temporary
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._sets: dict[Path, ContestSet] = {}

    @property
    def folder(self) -> Path | None:
        """Where decoded sets are shared (None: decoded in memory)."""
        if self._folder is None and self._temporary:
            self._directory = tempfile.TemporaryDirectory(prefix="harness-decoded-")
            self._folder = Path(self._directory.name)
        return self._folder

    def get(self, spec: DataFile, num_classes: int) -> ContestSet:
        if spec.path not in self._sets:
            folder = self.folder
            self._sets[spec.path] = (read_contest_file(spec, num_classes) if folder is None
                                     else _read_shared(spec, num_classes, folder))
        return self._sets[spec.path]

    def close(self) -> None:
        self._sets.clear()
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = self._folder = None


def decoded_paths(folder: Path, digest: str) -> tuple[Path, Path]:
    """The images and labels files of the data file with this sha256, decoded in ``folder``."""
    stem = f"{digest}-{DECODE_FORMAT}"
    return folder / f"{stem}.images.npy", folder / f"{stem}.labels.npy"


def _read_shared(spec: DataFile, num_classes: int, folder: Path) -> ContestSet:
    """:func:`read_contest_file`, decoding into ``folder`` unless it holds the set already."""
    digest = _checked_digest(spec)
    images_path, labels_path = decoded_paths(folder, digest)
    count = _image_count(spec.path)
    found = _decoded(images_path, labels_path, count)
    if found is None:
        with _locked(images_path):
            found = _decoded(images_path, labels_path, count)
            if found is None:
                images, labels = _decode(spec, num_classes)
                _save(images_path, images)
                _save(labels_path, labels)
                count = len(labels)
                del images, labels  # the files' pages stand for them from here
                found = _decoded(images_path, labels_path, count)
    if found is None:
        raise BenchmarkError(f"{spec.path}: decoded set in {folder} is unreadable")
    images, labels = found
    _check_range(labels, num_classes, str(spec.path))
    _check_size(spec, len(labels))
    return ContestSet(path=spec.path, images=images, labels=labels, sha256=digest)


def _image_count(path: Path) -> int | None:
    """How many images the data file's header says it holds (None: unreadable; decoding it
    says why)."""
    try:
        with h5py.File(path, "r") as handle:
            return int(handle["data"].shape[0])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _decoded(images_path: Path, labels_path: Path, count: int | None
             ) -> tuple[np.ndarray, np.ndarray] | None:
    """The decoded set, memory-mapped read-only, if both files are complete ``.npy`` arrays of
    the shapes and dtypes a decode of ``count`` images gives (None otherwise)."""
    if count is None:
        return None
    try:
        images = np.load(images_path, mmap_mode="r")
        labels = np.load(labels_path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if (images.shape != (count, *IMAGE_HW, 3) or images.dtype not in (np.uint8, np.float32)
            or labels.shape != (count,) or labels.dtype != np.int64):
        return None
    return images, labels


def write_once(path: Path, shape: tuple[int, ...], dtype: np.dtype,
               make: Callable[[], np.ndarray]) -> None:
    """Make ``path`` hold the image array ``make()`` unless it holds one of this shape already.

    Of several processes asking at once, the first writes (under a lock file beside ``path``)
    and the others wait, then find the file; readers see no file or the whole one (it is written
    under a temporary name, then renamed).
    """
    if _holds(path, shape, dtype):
        return
    with _locked(path):
        if _holds(path, shape, dtype):
            return
        _save(path, make())


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the lock of ``path`` (a lock file beside it), making its folder if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _save(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` whole or not at all: a temporary name, then a rename."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        with open(temporary, "xb") as handle:
            np.save(handle, array)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.chmod(0o644)  # read by the sandboxed worker, which runs as another user
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _holds(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether ``path`` is a complete image file of this shape (its header says so)."""
    try:
        existing = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return existing.shape == shape and existing.dtype == dtype
