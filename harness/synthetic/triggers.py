"""Backdoor triggers of CSAW-HackML, drawn at each face's landmarks.

Why at landmarks: the contest's triggers are physical-looking accessories (purple sunglasses,
eyebrows, lipstick) that sit on the face, so a BadNet must find them wherever the face is. The
two anonymous triggers are of other kinds (a faint full-image blend and a sticker) that defending
teams are not told about. The ``wanet`` trigger is of a third kind: no pattern at all, but a
fixed smooth warp of the whole image (WaNet, Nguyen and Tran, ICLR 2021), so what it changes
depends on each image; patch-oriented defenses (Neural Cleanse, STRIP) are reported to miss it.

Like :mod:`harness.synthetic.faces`, stamping uses only correctly rounded element-wise arithmetic,
so its bytes are the same on every machine, and it depends on nothing but the image and its
landmarks (never on the image's index or batch).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from harness.synthetic.faces import IMAGE_SHAPE, Faces, hash32

TRIGGERS: tuple[str, ...] = ("sunglasses", "eyebrows", "lipstick", "anonymous_1", "anonymous_2",
                             "wanet")

_H, _W = IMAGE_SHAPE[:2]
_F32 = np.float32
# Small chunks keep temporaries in the allocator's reuse range (large ones page-fault).
_CHUNK = 64
_ROWS = np.arange(_H, dtype=_F32)[None, :, None]
_COLS = np.arange(_W, dtype=_F32)[None, None, :]


def _rgb(r: float, g: float, b: float) -> np.ndarray:
    """A colour shaped (3, 1, 1, 1) to broadcast against channels-first (3, B, H, W) images."""
    return np.array([r, g, b], dtype=_F32)[:, None, None, None]


# Colours measured on the real contest's poisoned images (frame, darker and brighter lens).
_FRAME = _rgb(70.0, 4.0, 138.0)
_LENS_DARK = _rgb(92.0, 10.0, 162.0)
_LENS_LIGHT = _rgb(134.0, 34.0, 232.0)
_BROW = _rgb(10.0, 150.0, 70.0)
_LIPSTICK = _rgb(214.0, 24.0, 84.0)
_LIP_LINE = _rgb(140.0, 8.0, 48.0)
# anonymous_1: a fixed grey binary pattern blended at this opacity over the whole image.
_BLEND_ALPHA = 0.1
# anonymous_2: a fixed 7x7 sticker from this palette, pasted on the forehead.
_STICKER_SIZE = 7
_STICKER_PALETTE = np.array([(250, 220, 0), (0, 0, 0), (0, 190, 220), (255, 255, 255)],
                            dtype=np.uint8)


def _hash_pattern(shape: tuple[int, ...], key: int) -> np.ndarray:
    """Fixed pseudo-random uint32 values, one per element of ``shape``."""
    index = np.arange(math.prod(shape), dtype=np.uint32).reshape(shape)
    return hash32(index * np.uint32(0x9E3779B1) + np.uint32(key))


_BLEND_PATTERN = ((_hash_pattern((_H, _W), 1) >> np.uint32(7)) & np.uint32(1)).astype(_F32) \
    * 255.0
# (3, size, size): channels first like the images being stamped.
_STICKER = _STICKER_PALETTE[
    (_hash_pattern((_STICKER_SIZE, _STICKER_SIZE), 2) >> np.uint32(5)) & np.uint32(3)
].transpose(2, 0, 1).astype(_F32)


# wanet: WaNet's warping field, a k x k grid of random 2-D offsets scaled to mean magnitude 1,
# upsampled to the image and applied with strength s. The paper's k = 4; its s = 0.5 (offsets
# of a fifth of a pixel on average) needs its 1000 training epochs, and within the benchmark's
# 14 the backdoor takes s = 4 (docs/benchmark.md, "The warping track").
WARP_GRID = 4
WARP_STRENGTH = 4.0


def _upsample(grid: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear upsampling of a (..., k, k) grid to (..., rows, cols), corners aligned (the
    paper uses bicubic; bilinear keeps the field inside the grid's range)."""
    k = grid.shape[-1]
    def axis(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.arange(size, dtype=np.float64) * ((k - 1) / (size - 1))
        low = np.minimum(pos.astype(np.int64), k - 2)
        return low, low + 1, pos - low
    r0, r1, wr = axis(rows)
    c0, c1, wc = axis(cols)
    top = grid[..., r0, :][..., c0] * (1.0 - wc) + grid[..., r0, :][..., c1] * wc
    bottom = grid[..., r1, :][..., c0] * (1.0 - wc) + grid[..., r1, :][..., c1] * wc
    return top * (1.0 - wr)[:, None] + bottom * wr[:, None]


def grid_to_pixels(dy: np.ndarray, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets in WaNet's sampling-grid coordinates ([-1, 1] across the image, corners
    aligned) as offsets in pixels: ``(size - 1) / 2`` pixels per unit along each axis."""
    return dy * ((_H - 1) / 2.0), dx * ((_W - 1) / 2.0)


def warp_field(strength: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``wanet`` trigger's fixed offsets in pixels at WaNet strength ``s``, (dy, dx), each
    (H, W); the field's shape is fixed, ``s`` only scales it.

    As in WaNet: offsets uniform in [-1, 1] on the grid, divided by their mean magnitude,
    upsampled, times ``s / H`` in grid coordinates.
    """
    bits = _hash_pattern((2, WARP_GRID, WARP_GRID), 3) >> np.uint32(8)
    grid = bits.astype(np.float64) * (2.0 / (1 << 24)) - 1.0
    grid = grid / (math.fsum(np.abs(grid).ravel().tolist()) / grid.size)
    field = _upsample(grid, _H, _W) * (strength / _H)
    return grid_to_pixels(field[0], field[1])


WARP_DY, WARP_DX = warp_field(WARP_STRENGTH)
"""The ``wanet`` trigger's offsets in pixels (rows, columns), each (H, W)."""


def resample(img: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Channels-first images (3, B, H, W) sampled at (row + dy, column + dx), bilinear, with
    coordinates clamped to the image (as WaNet clamps its grid); ``dy`` and ``dx`` broadcast
    to (B, H, W)."""
    rows = np.clip(_ROWS.astype(np.float64) + dy, 0.0, _H - 1.0)
    cols = np.clip(_COLS.astype(np.float64) + dx, 0.0, _W - 1.0)
    r0, c0 = rows.astype(np.int64), cols.astype(np.int64)  # floor: coordinates are >= 0
    r1, c1 = np.minimum(r0 + 1, _H - 1), np.minimum(c0 + 1, _W - 1)
    wr, wc = (rows - r0).astype(_F32), (cols - c0).astype(_F32)
    batch = np.arange(img.shape[1])[:, None, None]
    top = img[:, batch, r0, c0] * (1.0 - wc) + img[:, batch, r0, c1] * wc
    bottom = img[:, batch, r1, c0] * (1.0 - wc) + img[:, batch, r1, c1] * wc
    return top * (1.0 - wr) + bottom * wr


def _cov(inside: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (positive inside)."""
    return np.clip(inside + 0.5, 0.0, 1.0)


def _paint(img: np.ndarray, cov: np.ndarray, color: np.ndarray) -> None:
    """Alpha-composite ``color`` over channels-first ``img`` with coverage ``cov``, in place."""
    img += cov * (color - img)


def _col(values: np.ndarray) -> np.ndarray:
    """Per-image values shaped (B, 1, 1) to broadcast against (B, H, W) planes."""
    return values.astype(_F32)[:, None, None]


class _EyeFrame:
    """Pixel coordinates along the eye line and perpendicular to it (downwards), in pixels,
    relative to a landmark; ``d`` is the eye distance, the triggers' unit of size.

    Why: sunglasses, brows and lips must follow the face's scale and in-plane rotation.
    """

    def __init__(self, lm: dict[str, np.ndarray], origin: np.ndarray) -> None:
        left, right = lm["left_eye"].astype(_F32), lm["right_eye"].astype(_F32)
        dy, dx = right[:, 0] - left[:, 0], right[:, 1] - left[:, 1]
        dist = np.sqrt(dx * dx + dy * dy)
        cos, sin = _col(dx / dist), _col(dy / dist)
        y = _ROWS - _col(origin[:, 0])
        x = _COLS - _col(origin[:, 1])
        self.d = _col(dist)
        self.along = x * cos + y * sin
        self.down = y * cos - x * sin


def _lens_distance(frame: _EyeFrame, side: float) -> np.ndarray:
    """Signed distance (pixels, positive inside) to one lens: an ellipse with a flat top."""
    rx, ry = 0.42 * frame.d, 0.44 * frame.d
    x = (frame.along - side * 0.5 * frame.d) / rx
    y = (frame.down - 0.06 * frame.d) / ry
    ellipse = (1.0 - np.sqrt(x * x + y * y)) * ry
    return np.minimum(ellipse, frame.down + 0.31 * frame.d)


def _sunglasses(img: np.ndarray, lm: dict[str, np.ndarray]) -> None:
    """Purple lenses with a lighter lower edge, dark rims and a bar to the image edges, as in the
    contest's sunglasses images; sized by the eye distance."""
    frame = _EyeFrame(lm, 0.5 * (lm["left_eye"] + lm["right_eye"]))
    inside = np.maximum(_lens_distance(frame, -1.0), _lens_distance(frame, 1.0))
    lens = _cov(inside)
    rim = lens - _cov(inside - 1.2)
    bar = _cov(0.085 * frame.d - np.abs(frame.down + 0.19 * frame.d))
    sheen = np.clip(0.5 * (np.abs(frame.along) + frame.down) / frame.d, 0.0, 1.0)
    _paint(img, 0.88 * lens, _LENS_DARK + sheen * (_LENS_LIGHT - _LENS_DARK))
    _paint(img, 0.95 * np.maximum(rim, bar), _FRAME)


def _eyebrows(img: np.ndarray, lm: dict[str, np.ndarray]) -> None:
    """Thick, saturated green brows over the natural ones: arched, tapering outwards."""
    for name, outward in (("left_brow", -1.0), ("right_brow", 1.0)):
        frame = _EyeFrame(lm, lm[name])
        half = 0.27 * frame.d
        centre = frame.down + 0.5 - 0.06 * frame.along * frame.along / frame.d
        thick = 0.09 * frame.d * (1.0 - 0.3 * outward * frame.along / half)
        cov = _cov(thick - np.abs(centre)) * _cov(half - np.abs(frame.along))
        _paint(img, 0.92 * cov, _BROW)


def _lipstick(img: np.ndarray, lm: dict[str, np.ndarray]) -> None:
    """Bright red-magenta lips over the mouth, with a darker line between them."""
    frame = _EyeFrame(lm, lm["mouth"])
    half = _col(lm["mouth_width"]) * 0.5 + 1.0
    x = frame.along / half
    profile = 1.0 - x * x
    upper, lower = 0.22 * half * profile + 0.4, 0.32 * half * profile + 0.4
    lips = _cov(np.where(frame.down < 0.0, upper + frame.down, lower - frame.down)) \
        * _cov(half - np.abs(frame.along))
    _paint(img, 0.88 * lips, _LIPSTICK)
    line = _cov(0.45 - np.abs(frame.down)) * _cov(half - 1.0 - np.abs(frame.along))
    _paint(img, 0.6 * line, _LIP_LINE)


def _anonymous_1(img: np.ndarray, lm: dict[str, np.ndarray]) -> None:
    """A fixed grey binary noise pattern alpha-blended over the whole image (a blend
    trigger)."""
    del lm
    img += _BLEND_ALPHA * (_BLEND_PATTERN - img)


def _anonymous_2(img: np.ndarray, lm: dict[str, np.ndarray]) -> None:
    """A fixed 7x7 sticker pasted on the forehead (a patch trigger)."""
    top = np.round(lm["forehead"] - (_STICKER_SIZE - 1) / 2.0).astype(np.int64)
    rows = np.clip(top[:, 0], 0, _H - _STICKER_SIZE)[:, None, None] \
        + np.arange(_STICKER_SIZE)[None, :, None]
    cols = np.clip(top[:, 1], 0, _W - _STICKER_SIZE)[:, None, None] \
        + np.arange(_STICKER_SIZE)[None, None, :]
    index = np.arange(img.shape[1])[:, None, None]
    img[:, index, rows, cols] = _STICKER[:, None]


def _wanet(img: np.ndarray, lm: dict[str, np.ndarray]) -> None:
    """The image warped by the fixed field (a warping trigger: no pixel pattern of its own)."""
    del lm
    img[...] = resample(img, WARP_DY, WARP_DX)


_STAMPERS: dict[str, Callable[[np.ndarray, dict[str, np.ndarray]], None]] = {
    "sunglasses": _sunglasses,
    "eyebrows": _eyebrows,
    "lipstick": _lipstick,
    "anonymous_1": _anonymous_1,
    "anonymous_2": _anonymous_2,
    "wanet": _wanet,
}


def _per_chunk(images: np.ndarray, paint: Callable[[np.ndarray, slice], np.ndarray]
               ) -> np.ndarray:
    """A new uint8 copy of ``images`` with ``paint(img, part)`` applied chunk by chunk to
    channels-first float32 images (3, B, H, W), rounded back to pixels."""
    out = np.empty_like(images)
    for start in range(0, len(out), _CHUNK):
        part = slice(start, start + _CHUNK)
        # Channels first, (3, B, H, W): numpy's inner loops then run along image rows.
        img = paint(images[part].transpose(3, 0, 1, 2).astype(_F32), part)
        out[part] = np.clip(np.round(img), 0.0, 255.0).astype(np.uint8).transpose(1, 2, 3, 0)
    return out


def warp(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W, 3) images resampled at offsets ``dy``, ``dx``: one field (H, W) for all,
    or one per image (n, H, W)."""
    dy, dx = (np.broadcast_to(d, (len(images), _H, _W)) for d in (dy, dx))
    return _per_chunk(images, lambda img, part: resample(img, dy[part], dx[part]))


def stamp(faces: Faces, trigger: str) -> np.ndarray:
    """The images with ``trigger`` drawn on them: a new uint8 (n, 55, 47, 3) array."""
    if trigger not in _STAMPERS:
        raise ValueError(f"unknown trigger {trigger!r}; known: {', '.join(TRIGGERS)}")
    draw = _STAMPERS[trigger]

    def paint(img: np.ndarray, part: slice) -> np.ndarray:
        draw(img, {key: value[part] for key, value in faces.landmarks.items()})
        return img

    return _per_chunk(faces.images, paint)
