"""A procedural look-alike of the aligned face crops of CSAW-HackML (YouTube Aligned Faces).

Why: the contest's face data is not public, so the grader synthesises a benchmark with the same
shape (55x47 RGB, one identity per class, the face filling the frame with the eyes near row 22)
on which a small CNN learns identities and BadNets learn triggers drawn at facial landmarks.

Why the arithmetic is so restricted: the grader regenerates about 100k images on first use and
checks them against stored sha256 sums, so every byte must be identical on every machine. Only
correctly rounded IEEE operations are used (element-wise ``+ - * /``, ``sqrt``, comparisons,
``floor``, ``clip``, ``where``, integer ops, fixed-order sums of shifted arrays), never libm
transcendentals or reductions whose order depends on numpy's SIMD paths. Rotations use the rational
parametrisation ``c = (1 - t^2) / (1 + t^2)``, ``s = 2t / (1 + t^2)``. Random numbers come only
from ``Generator.random()`` of a PCG64 seeded through a ``SeedSequence``; per-pixel noise is an
integer hash, so each image's bytes depend only on its identity, its seed and its index.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import accumulate

import numpy as np

IMAGE_SHAPE = (55, 47, 3)
_H, _W = IMAGE_SHAPE[:2]
# Pixel position (row, col) of the canonical face origin: the face coordinates (u right, v down)
# are pixels at scale 1 measured from here.
_CY, _CX = 27.0, 23.0
# Images are rendered in chunks to bound memory; the output does not depend on the chunk size.
_CHUNK = 48
# SeedSequence domain tags, so that identities and renders drawn with equal seeds are unrelated.
_IDENTITY_DOMAIN = 0x1D
_RENDER_DOMAIN = 0x5E
# Uniform columns drawn per identity and per image. Spare columns leave room for new attributes
# without shifting the random values of the existing ones.
_IDENTITY_COLUMNS = 96
_IMAGE_COLUMNS = 48

_F32 = np.float32

# Skin tones from dark to light; an identity interpolates between neighbours.
_SKIN = np.array([(60, 38, 28), (112, 72, 50), (168, 118, 88), (214, 166, 134),
                  (238, 200, 176)], dtype=np.float64)
# Hair colours with their frequencies: black, dark brown, brown, blond, auburn, grey, white.
_HAIR = np.array([(22, 18, 16), (52, 36, 26), (96, 64, 40), (186, 148, 92), (128, 58, 30),
                  (128, 124, 120), (205, 200, 195)], dtype=np.float64)
_HAIR_WEIGHTS = (0.30, 0.25, 0.15, 0.10, 0.07, 0.08, 0.05)
# Iris colours: dark, brown, hazel, blue, green, grey.
_IRIS = np.array([(36, 24, 18), (84, 52, 30), (112, 88, 48), (70, 108, 160), (68, 108, 70),
                  (108, 114, 120)], dtype=np.float64)
# Hair styles (bald, short, fringe, side parting, long) and beards (none, stubble, moustache,
# goatee, full) with their frequencies.
_STYLE_WEIGHTS = (0.10, 0.35, 0.20, 0.20, 0.15)
_BALD, _SHORT, _FRINGE, _PARTING, _LONG = range(5)
_BEARD_WEIGHTS = (0.60, 0.12, 0.10, 0.08, 0.10)
_STUBBLE, _MOUSTACHE, _GOATEE, _FULL_BEARD = range(1, 5)


@dataclass(frozen=True)
class Variation:
    """Per-image (within-identity) variation: the knob that sets how hard recognition is."""

    shift: float = 2.5        # max pose shift in pixels, each axis
    scale: float = 0.05       # max relative scale change
    rotation: float = 0.08    # max in-plane rotation in radians (small-angle)
    light: float = 0.25       # lighting gain, colour cast, gradient and offset amplitude
    expression: float = 1.0   # brow raise, eye openness, mouth opening, smile and gaze
    noise: float = 10.0       # max per-pixel noise amplitude (0..255 scale)
    occluder: float = 0.1     # probability of a random occluder (bar or blob)
    blur: float = 1.0         # max extra blur (focus): 0 = 3x3 binomial only, 1 = 5x5 binomial

    def __post_init__(self) -> None:
        """Reject settings the renderer cannot honour: it keeps faces upright (|rotation| < 2
        keeps cos > 0) and the scale positive."""
        if any(getattr(self, f.name) < 0 for f in fields(self)):
            raise ValueError("Variation fields must be >= 0")
        if self.rotation >= 2.0 or self.scale >= 1.0 or self.occluder > 1.0:
            raise ValueError("Variation needs rotation < 2, scale < 1 and occluder <= 1")


@dataclass(frozen=True)
class Identities:
    """One row per identity: every attribute that stays fixed across an identity's images.

    Lengths are in face units (pixels at scale 1), ``v`` positions relative to the face origin
    (negative is up), colours are RGB floats in 0..255.
    """

    face_a: np.ndarray        # face half width
    face_b: np.ndarray        # face half height
    face_v: np.ndarray        # face centre below the origin
    jaw: np.ndarray           # how much the face narrows towards the chin
    skin: np.ndarray          # (n, 3)
    skin_shade: np.ndarray    # darkening towards the face outline
    ear: np.ndarray           # ear half height
    neck: np.ndarray          # neck half width
    shoulder: np.ndarray      # height of the shoulders at the image edge
    cloth: np.ndarray         # (n, 3)
    shirt: np.ndarray         # (n, 3)
    background: np.ndarray    # (n, 3) left of the background edge
    background2: np.ndarray   # (n, 3) right of it
    bg_edge: np.ndarray       # column of the background edge (often outside the image)
    bg_slope: np.ndarray      # its slant
    bg_gradient: np.ndarray   # top-to-bottom brightness change
    hair: np.ndarray          # (n, 3)
    hair_style: np.ndarray    # int: bald, short, fringe, side parting, long
    hairline: np.ndarray      # v of the hairline at the centre
    hair_curve: np.ndarray    # hairline descent towards the temples
    hair_part: np.ndarray     # hairline slant (side parting)
    hair_volume: np.ndarray   # hair thickness around the head
    hair_freq: np.ndarray     # strand texture frequency
    hair_slant: np.ndarray    # strand direction
    hair_texture: np.ndarray  # strand contrast
    beard_style: np.ndarray   # int: none, stubble, moustache, goatee, full
    beard_alpha: np.ndarray
    eye_dx: np.ndarray        # half the eye distance
    eye_v: np.ndarray
    eye_r: np.ndarray
    eye_open: np.ndarray
    socket: np.ndarray        # eye-socket shadow strength
    iris: np.ndarray          # (n, 3)
    brow_h: np.ndarray        # brow height above the eye centre
    brow_dx: np.ndarray       # brow offset outwards from the eye
    brow_len: np.ndarray
    brow_thick: np.ndarray
    brow_arch: np.ndarray
    brow_tilt: np.ndarray
    brow: np.ndarray          # (n, 3)
    nose_len: np.ndarray      # nose tip below the eyes
    nose_w: np.ndarray
    nose_dark: np.ndarray
    nose_side: np.ndarray     # +-1: side of the bridge shadow
    mouth_gap: np.ndarray     # mouth below the nose tip
    mouth_w: np.ndarray       # mouth half width
    mouth_thick: np.ndarray
    mouth_curve: np.ndarray
    lips: np.ndarray          # (n, 3)
    mole_u: np.ndarray
    mole_v: np.ndarray
    mole_alpha: np.ndarray    # 0 for identities without a mole

    def __len__(self) -> int:
        return len(self.face_a)


@dataclass(frozen=True)
class Faces:
    """Rendered images and, per image, the landmarks that triggers are drawn at.

    ``landmarks`` holds float32 pixel coordinates (row, col) of shape (n, 2) for ``left_eye`` and
    ``right_eye`` (left and right as seen in the image), ``left_brow``, ``right_brow``, ``nose``
    (tip), ``mouth`` (centre) and ``forehead``, and (n,) sizes in pixels: ``eye_radius``,
    ``mouth_width`` (full width), ``brow_thickness`` and ``face_width`` (widest).
    """

    images: np.ndarray
    landmarks: dict[str, np.ndarray]


class _Uniforms:
    """Hands out the columns of one (n, k) uniform matrix.

    Why: drawing all of a row's values in one ``random((n, k))`` call makes row i depend only on
    the seed and i, so the first m rows are the same whatever n is.
    """

    def __init__(self, seed: int, domain: int, n: int, columns: int) -> None:
        sequence = np.random.SeedSequence([domain, seed])
        self._values = np.random.Generator(np.random.PCG64(sequence)).random((n, columns))
        self._next = 0

    def take(self, low: float | np.ndarray = 0.0, high: float | np.ndarray = 1.0,
             width: int = 0) -> np.ndarray:
        """Next column (or ``width`` columns) scaled to [low, high), as float64."""
        count = max(width, 1)
        if self._next + count > self._values.shape[1]:
            raise RuntimeError("too few uniform columns reserved")
        column = self._values[:, self._next:self._next + count]
        self._next += count
        out = low + (high - low) * column
        return out if width else out[:, 0]

    def choice(self, weights: tuple[float, ...]) -> np.ndarray:
        """Next column as an index drawn with the given frequencies."""
        edges = np.array(list(accumulate(weights[:-1])), dtype=np.float64)
        return np.searchsorted(edges, self.take(), side="right")


def _skin_tones(u: _Uniforms) -> np.ndarray:
    """Skin colours along the dark-to-light line, with a little hue jitter."""
    t = u.take() * (len(_SKIN) - 1)
    low = np.minimum(np.floor(t).astype(np.int64), len(_SKIN) - 2)
    frac = (t - low)[:, None]
    tone = _SKIN[low] + frac * (_SKIN[low + 1] - _SKIN[low])
    return tone + u.take(-12.0, 12.0, width=3)


def _backgrounds(u: _Uniforms) -> np.ndarray:
    """A mostly grey random colour with some saturation, like real indoor/outdoor backdrops."""
    return u.take(5.0, 210.0)[:, None] + u.take(-50.0, 50.0, width=3)


def _hair_attributes(u: _Uniforms, face_b: np.ndarray, eye_v: np.ndarray,
                     brow_h: np.ndarray) -> dict[str, np.ndarray]:
    """Hair colour and style; the hairline depends on the style (fringes sit above the brows)."""
    hair = _HAIR[u.choice(_HAIR_WEIGHTS)] + u.take(-10.0, 10.0, width=3)
    style = u.choice(_STYLE_WEIGHTS)
    high = u.take(-face_b + 5.0, -face_b + 10.0)  # short, parted, long: a high hairline
    fringe = eye_v - brow_h - u.take(1.5, 4.0)
    hairline = np.where(style == _FRINGE, fringe, high)
    curve = np.where(style == _FRINGE, u.take(0.0, 0.01), u.take(0.01, 0.035))
    part = np.where(style == _PARTING, u.take(-0.5, 0.5), u.take(-0.08, 0.08))
    return dict(hair=hair, hair_style=style, hairline=hairline, hair_curve=curve,
                hair_part=part, hair_volume=u.take(1.0, 4.0), hair_freq=u.take(0.4, 1.1),
                hair_slant=u.take(-0.6, 0.6), hair_texture=u.take(0.05, 0.3))


def sample_identities(n: int, seed: int) -> Identities:
    """``n`` random identities; the first m of them do not depend on n."""
    u = _Uniforms(seed, _IDENTITY_DOMAIN, n, _IDENTITY_COLUMNS)
    face_a, face_b = u.take(18.0, 21.5), u.take(27.0, 31.0)
    eye_v, eye_r = u.take(-7.0, -3.5), u.take(2.0, 3.0)
    brow_h = eye_r + u.take(1.4, 3.2)
    skin = _skin_tones(u)
    beard = u.choice(_BEARD_WEIGHTS)
    mole = u.take() < 0.25
    nose_len = u.take(9.0, 12.0)
    values = dict(
        face_a=face_a, face_b=face_b, face_v=u.take(1.0, 4.0), jaw=u.take(0.1, 0.35),
        skin=skin, skin_shade=u.take(0.2, 0.45), ear=u.take(2.5, 4.0), neck=u.take(7.0, 10.5),
        shoulder=u.take(20.0, 26.0), cloth=u.take(10.0, 200.0, width=3),
        shirt=u.take(120.0, 250.0, width=3), background=_backgrounds(u),
        background2=_backgrounds(u), bg_edge=u.take(-20.0, 67.0), bg_slope=u.take(-0.4, 0.4),
        bg_gradient=u.take(-0.35, 0.35),
        **_hair_attributes(u, face_b, eye_v, brow_h),
        beard_style=beard, beard_alpha=u.take(0.55, 0.9),
        eye_dx=np.minimum(u.take(9.5, 12.5), 0.56 * face_a), eye_v=eye_v, eye_r=eye_r,
        eye_open=u.take(0.6, 1.0), socket=u.take(0.2, 0.45), iris=_IRIS[u.choice((1,) * 6)],
        brow_h=brow_h, brow_dx=u.take(-0.5, 1.5), brow_len=u.take(6.0, 10.0),
        brow_thick=u.take(1.0, 2.6), brow_arch=u.take(-0.01, 0.07),
        brow_tilt=u.take(-0.15, 0.15),
        nose_len=nose_len, nose_w=u.take(1.8, 3.3), nose_dark=u.take(0.15, 0.35),
        nose_side=np.where(u.take() < 0.5, -1.0, 1.0),
        mouth_gap=u.take(5.0, 7.5), mouth_w=u.take(4.5, 7.5), mouth_thick=u.take(1.0, 2.0),
        mouth_curve=u.take(-0.02, 0.04),
        lips=skin * u.take(0.55, 0.75, width=3) + u.take(10.0, 40.0)[:, None] * (1, 0, 0),
        mole_u=u.take(-13.0, 13.0), mole_v=u.take(-2.0, 14.0),
        mole_alpha=np.where(mole, u.take(0.3, 0.6), 0.0),
    )
    values["brow"] = values["hair"] * u.take(0.35, 0.85)[:, None]
    for name in ("hair", "brow", "lips", "background", "background2"):
        values[name] = np.clip(values[name], 0.0, 255.0)
    return Identities(**{key: (value if key in ("hair_style", "beard_style")
                               else value.astype(_F32)) for key, value in values.items()})


def _image_parameters(n: int, seed: int, variation: Variation) -> dict[str, np.ndarray]:
    """Pose, expression, lighting, noise and occluder of each image (row i depends on i only)."""
    u = _Uniforms(seed, _RENDER_DOMAIN, n, _IMAGE_COLUMNS)
    shift, expr, light = variation.shift, variation.expression, variation.light
    half_turn = u.take(-0.5, 0.5) * variation.rotation  # t = tan(angle / 2) ~ angle / 2
    params = dict(
        x0=_CX + u.take(-shift, shift), y0=_CY + u.take(-shift, shift),
        k=1.0 + u.take(-variation.scale, variation.scale),
        c=(1.0 - half_turn * half_turn) / (1.0 + half_turn * half_turn),
        s=2.0 * half_turn / (1.0 + half_turn * half_turn),
        brow_raise=u.take(-0.8, 0.8) * expr, openness=1.0 - 0.5 * expr * u.take(),
        mouth_open=2.0 * expr * u.take() * u.take(), smile=u.take(-0.03, 0.03) * expr,
        gaze_u=u.take(-0.6, 0.6) * expr, gaze_v=u.take(-0.3, 0.3) * expr,
        gain=1.0 + u.take(-light, light), cast=u.take(-0.3, 0.3, width=3) * light,
        grad_x=u.take(-0.04, 0.04) * light, grad_y=u.take(-0.02, 0.02) * light,
        offset=u.take(-30.0, 30.0) * light, blur=u.take() * variation.blur,
        noise=u.take(0.6, 1.0) * variation.noise,
        noise_key=np.floor(u.take() * 4294967296.0),
        occ=(u.take() < variation.occluder).astype(np.float64), occ_bar=u.take(),
        occ_x=u.take(3.0, 44.0), occ_y=u.take(10.0, 52.0), occ_w=u.take(3.0, 11.0),
        occ_h=u.take(2.0, 7.0), occ_color=u.take(0.0, 255.0, width=3),
        occ_alpha=u.take(0.7, 1.0),
    )
    params["openness"] = np.maximum(params["openness"], 0.15)
    return params


def _layout(identities: Identities, labels: np.ndarray, params: dict[str, np.ndarray]
            ) -> dict[str, np.ndarray]:
    """Everything drawn for each image: its identity's attributes, its own parameters and the
    feature positions they imply (float32, one row per image)."""
    p = {f.name: getattr(identities, f.name)[labels] for f in fields(identities)}
    p.update({key: value.astype(_F32) for key, value in params.items()
              if key != "noise_key"})
    p["noise_key"] = params["noise_key"].astype(np.uint32)
    p["brow_v"] = p["eye_v"] - p["brow_h"] - p["brow_raise"]
    p["nose_v"] = p["eye_v"] + p["nose_len"]
    p["mouth_v"] = p["nose_v"] + p["mouth_gap"]
    p["eye_ry"] = p["eye_r"] * 0.75 * p["eye_open"] * p["openness"]
    return p


def _pixels(p: dict[str, np.ndarray], cu: np.ndarray, cv: np.ndarray) -> np.ndarray:
    """(row, col) pixel positions of face coordinates (cu, cv), shape (n, 2) float32."""
    col = p["x0"] + p["k"] * (p["c"] * cu - p["s"] * cv)
    row = p["y0"] + p["k"] * (p["s"] * cu + p["c"] * cv)
    return np.stack([row, col], axis=1).astype(_F32)


def _landmarks(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Landmarks in pixels, for triggers (left/right as seen in the image)."""
    brow_u = p["eye_dx"] + p["brow_dx"]
    zero = np.zeros_like(p["eye_v"])
    return {
        "left_eye": _pixels(p, -p["eye_dx"], p["eye_v"]),
        "right_eye": _pixels(p, p["eye_dx"], p["eye_v"]),
        "left_brow": _pixels(p, -brow_u, p["brow_v"]),
        "right_brow": _pixels(p, brow_u, p["brow_v"]),
        "nose": _pixels(p, zero, p["nose_v"]),
        "mouth": _pixels(p, zero, p["mouth_v"]),
        "forehead": _pixels(p, zero, p["brow_v"] - 4.5),
        "eye_radius": p["eye_r"] * p["k"],
        "mouth_width": 2.0 * p["mouth_w"] * p["k"],
        "brow_thickness": p["brow_thick"] * p["k"],
        "face_width": 2.0 * p["face_a"] * p["k"],
    }


class _Batch:
    """A chunk's per-image values, shaped to broadcast against (B, H, W) planes.

    ``b.name`` is (B, 1, 1), or (3, B, 1, 1) for colours; ``b.raw(name)`` is the flat array.
    """

    def __init__(self, values: dict[str, np.ndarray]) -> None:
        self._values = values

    def raw(self, name: str) -> np.ndarray:
        return self._values[name]

    def subset(self, index: np.ndarray) -> _Batch:
        return _Batch({name: value[index] for name, value in self._values.items()})

    def __getattr__(self, name: str) -> np.ndarray:
        value = self._values[name]
        return value.T[:, :, None, None] if value.ndim == 2 else value[:, None, None]


def _cov(inside: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (positive inside)."""
    return np.clip(inside + 0.5, 0.0, 1.0)


def _ellipse(du: np.ndarray, dv: np.ndarray, a: np.ndarray | float, b: np.ndarray | float,
             k: np.ndarray | float, sharp: float = 1.0) -> np.ndarray:
    """Coverage of an axis-aligned ellipse with edges about 1/sharp pixels wide.

    The signed distance is the first-order (1 - q) / |grad q|, accurate near the outline even for
    thin ellipses (a closing eye), capped by the distance to the bounding box: far from a thin
    ellipse the first-order estimate shrinks and would smear it along its long axis. The cap
    also ends the support within ``_ellipse_extent`` of the centre.
    """
    x, y = du / a, dv / b
    gx, gy = x / a, y / b
    first_order = (1.0 - (x * x + y * y)) / (2.0 * np.sqrt(gx * gx + gy * gy) + 1e-3)
    box = np.minimum(a - np.abs(du), b - np.abs(dv))
    return _cov(np.minimum(first_order, box) * (k * sharp))


def _ellipse_extent(a: np.ndarray | float, b: np.ndarray | float, k: np.ndarray | float,
                    sharp: float = 1.0) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Half extents (u, v) of an ellipse's support, soft edge included."""
    edge = 0.5 / (k * sharp)
    return a + edge, b + edge


def _tri(x: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1] with period 1 (strand textures without transcendentals)."""
    return np.abs(2.0 * (x - np.floor(x)) - 1.0)


# Pixels added around every feature box and row band; tests raise it to cover the whole image
# and check that the output does not change, i.e. that boxes and bands cover their features.
_PATCH_MARGIN = 1.0


class _Canvas:
    """A chunk's float32 image, its face coordinates and compositing.

    Why channels first, (3, B, H, W): numpy's inner loops then run along image rows; with RGB
    last they would run over 3 values and be an order of magnitude slower.
    """

    def __init__(self, b: _Batch) -> None:
        self.b = b
        self.k = b.k
        x = np.arange(_W, dtype=_F32)[None, None, :]
        y = np.arange(_H, dtype=_F32)[None, :, None]
        self.u, self.v = self.face_coordinates(x, y)
        # Largest |u| or |v| of any pixel: the farthest image corner's distance, in face units.
        dy = np.maximum(b.y0, _H - 1.0 - b.y0)
        dx = np.maximum(b.x0, _W - 1.0 - b.x0)
        self.reach = np.sqrt(dx * dx + dy * dy) / b.k
        self.img = np.zeros((3, len(b.raw("k")), _H, _W), dtype=_F32)

    def face_coordinates(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face coordinates (u, v) of pixel columns x and rows y (inverse pose)."""
        b = self.b
        x, y = x - b.x0, y - b.y0
        return (b.c * x + b.s * y) / b.k, (b.c * y - b.s * x) / b.k

    def paint(self, cov: np.ndarray, color: np.ndarray, rows: slice = slice(None)) -> None:
        """Alpha-composite ``color`` ((3, B, 1, 1), or per pixel) with coverage ``cov`` over
        ``rows`` of the image."""
        target = self.img[:, :, rows]
        target += cov * (color - target)

    def rows(self, v_low: np.ndarray | float, v_high: np.ndarray | float) -> slice:
        """Image rows that hold, in every image, all pixels whose v lies in [v_low, v_high].

        Why: large features confined to a band of the face (neck and clothes, back hair, beard)
        are computed on those rows only.
        """
        b = self.b
        slack = b.k * np.abs(b.s) * self.reach + _PATCH_MARGIN
        return _span(b.y0 + b.k * b.c * v_low - slack, b.y0 + b.k * b.c * v_high + slack, _H)

    def patch(self, centre_u: np.ndarray | float, centre_v: np.ndarray,
              half_u: np.ndarray | float, half_v: np.ndarray | float) -> _Patch:
        return _Patch(self, centre_u, centre_v, half_u, half_v)


class _Patch:
    """The pixels of one small feature's box in every image, for drawing eyes, brows, nose, mouth.

    Why: those features then cost a few hundred pixels per image instead of the whole frame. All
    boxes of a chunk have the chunk's largest size, each placed around its own image's feature;
    a box covers its feature's whole support (``half_u``, ``half_v`` in face units around the
    centre), so the output does not depend on the chunking. ``du``, ``dv`` are the face
    coordinates relative to the centre. Use as a context manager: the pixels are written back on
    exit.
    """

    def __init__(self, canvas: _Canvas, centre_u: np.ndarray | float, centre_v: np.ndarray,
                 half_u: np.ndarray | float, half_v: np.ndarray | float) -> None:
        b = canvas.b
        col = b.x0 + b.k * (b.c * centre_u - b.s * centre_v)
        row = b.y0 + b.k * (b.s * centre_u + b.c * centre_v)
        c, s = np.abs(b.c), np.abs(b.s)
        rows = _box(row, b.k * (half_u * s + half_v * c) + _PATCH_MARGIN, _H)
        cols = _box(col, b.k * (half_u * c + half_v * s) + _PATCH_MARGIN, _W)
        u, v = canvas.face_coordinates(cols[:, None, :].astype(_F32),
                                       rows[:, :, None].astype(_F32))
        self.du, self.dv, self.k = u - centre_u, v - centre_v, b.k
        images = np.arange(len(rows))[:, None, None]
        self._index = ((images * _H + rows[:, :, None]) * _W + cols[:, None, :]).reshape(-1)
        self._canvas = canvas
        shape = (3, len(rows), rows.shape[1], cols.shape[1])
        self.pixels = np.take(canvas.img.reshape(3, -1), self._index, axis=1).reshape(shape)

    def __enter__(self) -> _Patch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._canvas.img.reshape(3, -1)[:, self._index] = self.pixels.reshape(3, -1)

    def paint(self, cov: np.ndarray, color: np.ndarray | float) -> None:
        """Alpha-composite ``color`` with coverage ``cov``."""
        self.pixels += cov * (color - self.pixels)

    def darken(self, cov: np.ndarray, amount: np.ndarray | float) -> None:
        """Multiply by ``1 - amount * cov`` (negative amounts lighten): shadows and highlights."""
        self.pixels *= 1.0 - amount * cov


def _span(low: np.ndarray, high: np.ndarray, size: int) -> slice:
    """Pixel index range [floor(min low), ceil(max high)] clipped to the image."""
    start = int(np.floor(np.min(low)))
    stop = int(np.ceil(np.max(high))) + 1
    return slice(min(max(start, 0), size), min(max(stop, 0), size))


def _box(centre: np.ndarray, extent: np.ndarray, size: int) -> np.ndarray:
    """(B, n) pixel indices of a box of the chunk's largest size n covering
    [centre - extent, centre + extent] in each image, shifted inside the image."""
    centre, extent = centre.reshape(-1), np.broadcast_to(extent, centre.shape).reshape(-1)
    low = np.floor(centre - extent).astype(np.int64)
    high = np.ceil(centre + extent).astype(np.int64)
    n = min(int(np.max(high - low)) + 1, size)
    return np.clip(low, 0, size - n)[:, None] + np.arange(n)[None, :]


def _draw_background(cv: _Canvas, b: _Batch) -> None:
    """Two backdrop colours split by a slanted edge, with a vertical brightness gradient."""
    x = np.arange(_W, dtype=_F32)[None, None, :]
    y = np.arange(_H, dtype=_F32)[None, :, None]
    right = _cov(x - b.bg_edge - b.bg_slope * (y - _CY))
    light = 1.0 + b.bg_gradient * ((y - _CY) / _CY)
    cv.img[:] = (b.background + right * (b.background2 - b.background)) * light


def _hair_colour(cv: _Canvas, b: _Batch) -> np.ndarray:
    """Hair colour with a strand texture, (3, B, H, W)."""
    strands = _tri(cv.u * b.hair_freq + cv.v * b.hair_slant)
    return b.hair * (1.0 - b.hair_texture * strands)


def _style_is(b: _Batch, style: int) -> np.ndarray:
    return (b.hair_style == style).astype(_F32)


def _draw_back_hair(cv: _Canvas, b: _Batch, hair: np.ndarray) -> None:
    """Hair behind the head: down to the shoulders for long hair, to the ears otherwise, only at
    the sides for bald heads."""
    long_ = _style_is(b, _LONG)
    bald = _style_is(b, _BALD)
    bottom = b.eye_v + 3.0 + 40.0 * long_
    rows = cv.rows(-1e3, bottom + 1.0)
    u, v, k = cv.u[:, rows], cv.v[:, rows], cv.k
    a = b.face_a + b.hair_volume * (1.0 - 0.6 * bald) + 2.0 * long_
    height = b.face_b + b.hair_volume + 6.0 * long_
    top = b.face_v - 99.0 + 90.0 * bald
    cov = _head(u, v - b.face_v, a, height, 0.0, k)[0] * _cov((bottom - v) * k) \
        * _cov((v - top) * k)
    cv.paint(cov, hair[:, :, rows], rows)


def _draw_body(cv: _Canvas, b: _Batch) -> None:
    """Neck and clothes with a V of shirt under the chin."""
    clothes_top = b.shoulder + 14.0 - 0.6 * cv.reach
    rows = cv.rows(np.minimum(b.face_v, clothes_top) - 1.0, 1e3)
    u, v, k = cv.u[:, rows], cv.v[:, rows], cv.k
    au = np.abs(u)
    neck = _cov((b.neck - au) * k) * _cov((v - b.face_v) * k)
    cv.paint(neck, b.skin * 0.72, rows)
    clothes = _cov((v - b.shoulder - 14.0 + 0.6 * au) * k)
    collar = b.face_v + b.face_b - 4.0
    vee = _cov((v - collar - 1.4 * au) * k)
    shirt = _cov((v - collar + 4.0 - 0.7 * au) * k) * (1.0 - vee)
    cv.paint(clothes * (1.0 - vee), b.cloth, rows)
    cv.paint(clothes * shirt, b.shirt, rows)


def _draw_ears(cv: _Canvas, b: _Batch) -> None:
    half_w = 0.55 * b.ear
    half_u, half_v = _ellipse_extent(half_w, b.ear, cv.k)
    for side in (-1.0, 1.0):
        with cv.patch(side * (b.face_a - 0.3), b.eye_v + 2.0, half_u, half_v) as p:
            p.paint(_ellipse(p.du, p.dv, half_w, b.ear, p.k), b.skin * 0.82)


def _head(u: np.ndarray, dv: np.ndarray, a: np.ndarray, b: np.ndarray, jaw: np.ndarray | float,
          k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, squared normalised radius) of a head shape: a dome flatter than an ellipse
    above the centre (a wide forehead), narrowing by ``jaw`` towards the chin."""
    half_w = a * (1.0 - jaw * np.maximum(dv, 0.0) / b)
    x, y = u / half_w, dv / b
    up = np.minimum(y, 0.0)
    up2 = up * up
    q = x * x + y * y + 0.5 * (up2 * up2 - up2)
    return _cov((1.0 - np.sqrt(q)) * half_w * k), q


def _face_shape(cv: _Canvas, b: _Batch) -> tuple[np.ndarray, np.ndarray]:
    return _head(cv.u, cv.v - b.face_v, b.face_a, b.face_b, b.jaw, cv.k)


def _draw_face(cv: _Canvas, b: _Batch, face: np.ndarray, q: np.ndarray) -> None:
    """Skin, darker towards the outline so the head looks round."""
    shade = 1.06 - b.skin_shade * np.minimum(q, 1.2)
    cv.paint(face, b.skin * shade)


def _draw_top_hair(cv: _Canvas, b: _Batch, hair: np.ndarray) -> None:
    """Hair over the forehead above the hairline (none for bald heads)."""
    u, v, k = cv.u, cv.v - b.face_v, cv.k
    head = _head(u, v, b.face_a + b.hair_volume, b.face_b + b.hair_volume, 0.0, k)[0]
    line = b.hairline - b.face_v + b.hair_curve * u * u + b.hair_part * u
    cov = head * _cov((line - v) * k) * (1.0 - _style_is(b, _BALD))
    cv.paint(cov, hair)


def _draw_beard(cv: _Canvas, b: _Batch, face: np.ndarray, hair: np.ndarray) -> None:
    """Stubble or a full beard over the jaw, a moustache, a goatee; in the hair colour.

    Drawn on the bearded images only (most identities have none).
    """
    chosen = np.flatnonzero(b.raw("beard_style"))
    if not len(chosen):
        return
    rows = cv.rows(b.mouth_v - 14.0, 1e3)  # the jaw line's highest point is mouth_v - 12.5
    b = b.subset(chosen)
    u, v, k, face = cv.u[chosen, rows], cv.v[chosen, rows], b.k, face[chosen, rows]
    au = np.abs(u)
    style = b.beard_style
    jaw_alpha = np.where(style == _FULL_BEARD, b.beard_alpha, 0.0) \
        + np.where(style == _STUBBLE, 0.35 * b.beard_alpha, 0.0)
    jaw_line = b.mouth_v - 2.5 - 10.0 * (au / b.face_a) * (au / b.face_a)
    jaw = face * _cov((v - jaw_line) * k) * jaw_alpha
    lip_alpha = np.where((style == _MOUSTACHE) | (style == _FULL_BEARD), b.beard_alpha, 0.0)
    lip = _cov((b.mouth_w + 1.0 - au) * k) * _cov((v - b.nose_v - 1.2) * k) \
        * _cov((b.mouth_v - b.mouth_thick - 0.3 - v) * k) * lip_alpha
    goatee_alpha = np.where(style == _GOATEE, b.beard_alpha, 0.0)
    goatee = face * _ellipse(u, v - b.mouth_v - 4.0, 0.6 * b.mouth_w, 3.0, k) * goatee_alpha
    cov = np.maximum(np.maximum(jaw, lip), goatee)
    pixels = cv.img[:, chosen, rows]
    pixels += cov * (hair[:, chosen, rows] - pixels)
    cv.img[:, chosen, rows] = pixels


def _draw_eyes(cv: _Canvas, b: _Batch) -> None:
    """Socket shadow, lid line, sclera, iris and pupil; openness and gaze vary per image."""
    r = b.eye_r
    socket_u, socket_v = 2.2 * r, 1.6 * r
    half_u, half_v = _ellipse_extent(socket_u, socket_v, cv.k, 0.3)
    white = 0.5 * b.skin + (0.5 * 190.0)
    for side in (-1.0, 1.0):
        # The box is centred on the socket shadow, the largest part, 0.6 above the eye.
        with cv.patch(side * b.eye_dx, b.eye_v - 0.6, half_u, half_v) as p:
            du, dv, k = p.du, p.dv - 0.6, p.k
            p.darken(_ellipse(du, p.dv, socket_u, socket_v, k, 0.3), b.socket)
            p.paint(0.8 * _ellipse(du, dv + 0.35, 1.4 * r, b.eye_ry + 0.5, k), b.brow * 0.4)
            sclera = _ellipse(du, dv, 1.25 * r, b.eye_ry, k)
            p.paint(sclera, white)
            iu, iv = du - b.gaze_u, dv - b.gaze_v
            iris = np.sqrt(iu * iu + iv * iv)
            p.paint(sclera * _cov((0.6 * r - iris) * k), b.iris)
            p.paint(sclera * _cov((0.27 * r - iris) * k), 12.0)


def _draw_brows(cv: _Canvas, b: _Batch) -> None:
    """Arched, tilted brows, thinner at the outer end; they rise with the expression."""
    half = 0.5 * b.brow_len
    half_u = half + 0.5 / cv.k
    half_v = 0.65 * b.brow_thick + 0.5 / cv.k + np.abs(b.brow_arch) * half_u * half_u \
        + np.abs(b.brow_tilt) * half_u
    for side in (-1.0, 1.0):
        with cv.patch(side * (b.eye_dx + b.brow_dx), b.brow_v, half_u, half_v) as p:
            du, k = p.du, p.k
            outward = side * du
            centre = p.dv + b.brow_tilt * outward - b.brow_arch * du * du
            thick = b.brow_thick * (1.0 - 0.3 * outward / half)
            cov = _cov((0.5 * thick - np.abs(centre)) * k) * _cov((half - np.abs(du)) * k)
            p.paint(0.9 * cov, b.brow)


def _draw_nose(cv: _Canvas, b: _Batch) -> None:
    """The nose is only shading: a soft bridge shadow on one side, a shadow under the tip,
    nostrils and a highlight on the tip."""
    k, w = cv.k, b.nose_w
    soft = 1.25 / k  # support beyond the edge of shapes with sharpness 0.4
    top, bottom = b.eye_v + 1.0 - soft, b.nose_v + 2.3 + soft
    half_u = np.maximum(1.4 * w + 0.6, 1.3 * w) + soft
    with cv.patch(0.0, 0.5 * (top + bottom), half_u, 0.5 * (bottom - top)) as p:
        du, v = p.du, p.dv + 0.5 * (top + bottom)
        taper = (v - b.eye_v) / b.nose_len
        bridge = _cov((0.6 * w * taper + 0.6 - np.abs(du - b.nose_side * 0.8 * w * taper))
                      * k * 0.5) * _cov((v - b.eye_v - 1.0) * k * 0.5) * _cov((b.nose_v - v) * k)
        p.darken(bridge, 0.5 * b.nose_dark)
        p.darken(_ellipse(du, v - b.nose_v - 1.0, 1.3 * w, 1.3, k, 0.4), b.nose_dark)
        nostrils = np.maximum(_ellipse(du + 0.7 * w, v - b.nose_v - 0.4, 0.9, 0.6, k),
                              _ellipse(du - 0.7 * w, v - b.nose_v - 0.4, 0.9, 0.6, k))
        p.darken(nostrils, 0.45)
        p.darken(_ellipse(du, v - b.nose_v + 1.4, 0.6 * w, 1.6, k, 0.4), -0.1)


def _draw_mouth(cv: _Canvas, b: _Batch) -> None:
    """Lips (the lower one fuller) around a mouth line that opens with the expression."""
    w, t, o = b.mouth_w, b.mouth_thick, b.mouth_open
    bend = b.mouth_curve + b.smile
    half_u = w + 0.5 / cv.k
    half_v = 1.25 * t + 0.5 * o + 0.3 + 0.5 / cv.k + np.abs(bend) * half_u * half_u
    with cv.patch(0.0, b.mouth_v, half_u, half_v) as p:
        du, k = p.du, p.k
        line = p.dv + bend * du * du
        x = du / w
        profile = 1.0 - x * x
        lip = t * (0.8 + 0.45 * (line > 0.0).astype(_F32))
        lips = _cov((lip * profile + 0.5 * o * profile + 0.3 - np.abs(line)) * k) \
            * _cov((w - np.abs(du)) * k)
        p.paint(0.9 * lips, b.lips)
        gap = _cov((0.35 + 0.5 * o * profile - np.abs(line)) * k) \
            * _cov((w - 0.4 - np.abs(du)) * k)
        p.paint(0.75 * gap, b.lips * 0.35)


def _draw_mole(cv: _Canvas, b: _Batch) -> None:
    half_u, half_v = _ellipse_extent(0.7, 0.7, cv.k)
    with cv.patch(b.mole_u, b.mole_v, half_u, half_v) as p:
        p.darken(_ellipse(p.du, p.dv, 0.7, 0.7, p.k), b.mole_alpha)


def _draw_occluders(cv: _Canvas, b: _Batch) -> None:
    """A bar or a blob (hand, microphone, caption) over part of some images, in pixel space."""
    chosen = np.flatnonzero(b.raw("occ"))
    if not len(chosen):
        return
    o = b.subset(chosen)
    x = np.arange(_W, dtype=_F32)[None, None, :] - o.occ_x
    y = np.arange(_H, dtype=_F32)[None, :, None] - o.occ_y
    bar = _cov(o.occ_w - np.abs(x)) * _cov(o.occ_h - np.abs(y))
    blob = _ellipse(x, y, o.occ_w, o.occ_h, np.ones_like(o.occ_w))
    cov = np.where(o.occ_bar < 0.5, bar, blob) * o.occ_alpha
    sub = cv.img[:, chosen]
    sub += cov * (o.occ_color - sub)
    cv.img[:, chosen] = sub


def _blur(img: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """Separable blur with replicated edges, per axis the kernel [e, 4, 8 - 2e, 4, e] / 16: the
    3x3 binomial at e = 0, the 5x5 binomial at e = 1; a fixed-order sum of shifted arrays."""
    centre, outer = 0.5 - 0.125 * extra, 0.0625 * extra
    p = np.concatenate([img[..., :1], img[..., :1], img, img[..., -1:], img[..., -1:]], axis=-1)
    h = centre * p[..., 2:-2] + 0.25 * (p[..., 1:-3] + p[..., 3:-1]) \
        + outer * (p[..., :-4] + p[..., 4:])
    p = np.concatenate([h[..., :1, :], h[..., :1, :], h, h[..., -1:, :], h[..., -1:, :]],
                       axis=-2)
    return centre * p[..., 2:-2, :] + 0.25 * (p[..., 1:-3, :] + p[..., 3:-1, :]) \
        + outer * (p[..., :-4, :] + p[..., 4:, :])


_NOISE_INDEX = np.arange(3 * _H * _W, dtype=np.uint32).reshape(3, 1, _H, _W)


def hash32(h: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finaliser: well-mixed pseudo-random uint32 values from uint32 inputs.

    Why: exact integer arithmetic gives fixed patterns and per-pixel noise that are the same on
    every machine and, keyed per image, independent of how images are batched.
    """
    h = h ^ (h >> np.uint32(16))
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _noise(keys: np.ndarray) -> np.ndarray:
    """Triangular noise in [-1, 1], (3, B, H, W), from each image's uint32 key."""
    h = hash32(_NOISE_INDEX + keys[:, None, None] * np.uint32(0x9E3779B1))
    tri = (h & np.uint32(255)) + ((h >> np.uint32(8)) & np.uint32(255))
    return (tri.astype(_F32) - 255.0) / 255.0


def _finish(cv: _Canvas, b: _Batch) -> np.ndarray:
    """Blur (low-resolution video look), lighting (gain, colour cast, gradient, offset), noise;
    then uint8."""
    img = _blur(cv.img, b.blur)
    x = np.arange(_W, dtype=_F32)[None, None, :] - _CX
    y = np.arange(_H, dtype=_F32)[None, :, None] - _CY
    light = 1.0 + b.grad_x * x + b.grad_y * y
    img *= light * (b.gain * (1.0 + b.cast))
    img += b.offset + b.noise * _noise(b.raw("noise_key"))
    return np.clip(np.round(img), 0.0, 255.0).astype(np.uint8).transpose(1, 2, 3, 0)


def _render_chunk(b: _Batch) -> np.ndarray:
    cv = _Canvas(b)
    _draw_background(cv, b)
    hair = _hair_colour(cv, b)
    _draw_back_hair(cv, b, hair)
    _draw_body(cv, b)
    _draw_ears(cv, b)
    face, q = _face_shape(cv, b)
    _draw_face(cv, b, face, q)
    _draw_top_hair(cv, b, hair)
    _draw_beard(cv, b, face, hair)
    _draw_eyes(cv, b)
    _draw_brows(cv, b)
    _draw_nose(cv, b)
    _draw_mouth(cv, b)
    _draw_mole(cv, b)
    _draw_occluders(cv, b)
    return _finish(cv, b)


def render(identities: Identities, labels: np.ndarray, seed: int,
           variation: Variation = Variation()) -> Faces:
    """One image per label, of that identity, with per-image variation drawn from ``seed``.

    Image i depends only on (identities[labels[i]], seed, i, variation): a prefix of ``labels``
    renders the same images, whatever the batching.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be a 1-D integer array")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(identities)):
        raise ValueError(f"labels must lie in [0, {len(identities)})")
    p = _layout(identities, labels, _image_parameters(len(labels), seed, variation))
    images = np.empty((len(labels), *IMAGE_SHAPE), dtype=np.uint8)
    for start in range(0, len(labels), _CHUNK):
        chunk = {key: value[start:start + _CHUNK] for key, value in p.items()}
        images[start:start + _CHUNK] = _render_chunk(_Batch(chunk))
    return Faces(images=images, landmarks=_landmarks(p))
