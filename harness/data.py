"""Reading the contest's HDF5 data format, checked against the track file.

The contest files hold ``data`` as (N, 3, 55, 47) pixel values 0..255 (channels first, float in the
official files) and ``label`` as (N,). The grader keeps every set as channels-last uint8 (a quarter
of float32's memory) when that is lossless, and reads each file once per run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from harness.errors import BenchmarkError
from harness.tracks import DataFile

IMAGE_HW = (55, 47)


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
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise BenchmarkError(f"{where}: labels span [{labels.min()}, {labels.max()}]; expected "
                             f"0..{num_classes - 1}")
    return labels


def read_contest_file(spec: DataFile, num_classes: int) -> ContestSet:
    """Read and validate one file; any problem is a one-line BenchmarkError naming the file."""
    where = str(spec.path)
    if not spec.path.is_file():
        raise BenchmarkError(f"{where}: data file not found")
    digest = sha256_file(spec.path)
    if spec.sha256 and digest != spec.sha256:
        raise BenchmarkError(f"{where}: sha256 {digest[:12]}... does not match the track file's "
                             f"{spec.sha256[:12]}...; the file is corrupt or from another build")
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
    if spec.size is not None and len(labels) != spec.size:
        raise BenchmarkError(f"{where}: holds {len(labels)} images; the track file says "
                             f"{spec.size}")
    return ContestSet(path=spec.path, images=images, labels=labels, sha256=digest)


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
    """Reads each data file once per run and hands the same arrays to every submission."""

    def __init__(self) -> None:
        self._sets: dict[Path, ContestSet] = {}

    def get(self, spec: DataFile, num_classes: int) -> ContestSet:
        if spec.path not in self._sets:
            self._sets[spec.path] = read_contest_file(spec, num_classes)
        return self._sets[spec.path]
