"""The procedural faces and the triggers: determinism (the grader checks regenerated data files
against stored sha256 sums), geometry of faces and landmarks, and where each trigger draws."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from harness.synthetic import faces as faces_module
from harness.synthetic.faces import (
    IMAGE_SHAPE,
    Faces,
    Variation,
    render,
    sample_identities,
)
from harness.synthetic.triggers import TRIGGERS, WARP_DX, WARP_DY, WARP_STRENGTH, stamp, warp

N_IDS, PER_ID, SEED = 12, 5, 3
POINTS = ("left_eye", "right_eye", "left_brow", "right_brow", "nose", "mouth", "forehead")
SIZES = ("eye_radius", "mouth_width", "brow_thickness", "face_width")
# Variation at the far end of anything a tuner would use, to stress the feature boxes.
EXTREME = Variation(shift=6.0, scale=0.2, rotation=0.4, light=0.5, expression=2.0, noise=20.0,
                    occluder=0.5, blur=2.0)

# sha256 of the tiny reference render and of every trigger stamped on it. If the generator
# changes on purpose, the data files' sums in the track files change too: rebuild the benchmark
# and update these.
GOLDEN_FACES = "d900365f70de555b364e739779487b9621ba26111c4794b881a89a30ee113c89"
GOLDEN_TRIGGERS = {
    "sunglasses": "cce6b597619a8f75a6cf5205fbb993b41a635dae7ceadca63b8f82d0d4bc2197",
    "eyebrows": "308ba56f71c8cbaf564c1e7f20ae1368df92336251edd7b37264b476a5b6a702",
    "lipstick": "c34b53a6a84618afeaa5dbc2478a6cce71a72e33ce8c38bcf9340c1a2b9337af",
    "anonymous_1": "1eb84fe7e00f9d8f48f018d97cdb3082e10a79c8c532568061cd96d2b835adb1",
    "anonymous_2": "35d1359274b68db78693f9ab97643aa339122e4202baf68ff57fe806f32f97a3",
    "wanet": "08bda5be4bf5522ef8069836deb53cb1885d9c96d9b77279bcbee142a505338c",
}


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.repeat(np.arange(N_IDS), PER_ID)


@pytest.fixture(scope="module")
def faces(labels: np.ndarray) -> Faces:
    return render(sample_identities(N_IDS, SEED), labels, SEED)


def subset(faces: Faces, index: np.ndarray) -> Faces:
    return Faces(images=faces.images[index],
                 landmarks={key: value[index] for key, value in faces.landmarks.items()})


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def golden_render() -> Faces:
    """16 identities x 2 images; seed 4 gives every hair and beard style, moles and occluders."""
    return render(sample_identities(16, 4), np.repeat(np.arange(16), 2), 4)


def golden_digests() -> tuple[str, dict[str, str]]:
    tiny = golden_render()
    return sha256(tiny.images), {t: sha256(stamp(tiny, t)) for t in TRIGGERS}


# --- faces -------------------------------------------------------------------------------------


def test_shapes_and_dtypes(faces: Faces, labels: np.ndarray) -> None:
    assert faces.images.shape == (len(labels), *IMAGE_SHAPE)
    assert faces.images.dtype == np.uint8
    assert set(faces.landmarks) == set(POINTS) | set(SIZES)
    for name in POINTS:
        assert faces.landmarks[name].shape == (len(labels), 2)
        assert faces.landmarks[name].dtype == np.float32
    for name in SIZES:
        assert faces.landmarks[name].shape == (len(labels),)


def test_golden_sha256() -> None:
    """Catches any accidental change of the generator or of a trigger (either would change the
    data files and so their sums in the track files)."""
    assert golden_digests() == (GOLDEN_FACES, GOLDEN_TRIGGERS)


def test_bytes_do_not_depend_on_numpy_simd_paths() -> None:
    """Other machines run other SIMD kernels; with numpy's dispatched ones switched off (its
    baseline only) the bytes must be the same."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:
        pytest.skip("this numpy does not expose its CPU dispatch table")
    active = [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]
    if not active:
        pytest.skip("this CPU runs numpy's baseline kernels only")
    code = ("from tests.synthetic.test_faces import golden_digests; "
            "faces, triggers = golden_digests(); "
            "print(faces, *(triggers[t] for t in sorted(triggers)))")
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True,
                            text=True, check=True,
                            env={**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(active),
                                 "PYTHONPATH": str(repo)})
    faces, triggers = golden_digests()
    assert result.stdout.split() == [faces, *(triggers[t] for t in sorted(triggers))]


def test_same_arguments_same_bytes_other_seed_other_bytes(faces: Faces, labels: np.ndarray
                                                           ) -> None:
    again = render(sample_identities(N_IDS, SEED), labels, SEED)
    assert sha256(again.images) == sha256(faces.images)
    for name, value in faces.landmarks.items():
        assert np.array_equal(again.landmarks[name], value)
    other_seed = render(sample_identities(N_IDS, SEED), labels, SEED + 1)
    assert (other_seed.images != faces.images).any(axis=(1, 2, 3)).all()
    other_people = render(sample_identities(N_IDS, SEED + 1), labels, SEED)
    assert (other_people.images != faces.images).any(axis=(1, 2, 3)).all()


def test_identities_do_not_depend_on_how_many_are_drawn() -> None:
    few, many = sample_identities(5, 7), sample_identities(40, 7)
    for field in fields(few):
        assert np.array_equal(getattr(few, field.name), getattr(many, field.name)[:5])


def test_images_do_not_depend_on_batching(faces: Faces, labels: np.ndarray,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    identities = sample_identities(N_IDS, SEED)
    prefix = render(identities, labels[:7], SEED)
    assert np.array_equal(prefix.images, faces.images[:7])
    monkeypatch.setattr(faces_module, "_CHUNK", 7)
    assert np.array_equal(render(identities, labels, SEED).images, faces.images)


def test_feature_boxes_cover_their_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small features are drawn in per-image boxes and large ones in row bands; boxes and bands
    as large as the image must give the same bytes, even under extreme variation."""
    identities = sample_identities(40, 11)
    labels = np.arange(40).repeat(3)
    boxed = render(identities, labels, 5, EXTREME).images
    monkeypatch.setattr(faces_module, "_PATCH_MARGIN", 100.0)
    assert np.array_equal(render(identities, labels, 5, EXTREME).images, boxed)


def test_landmarks_are_inside_and_in_facial_order(faces: Faces) -> None:
    lm = faces.landmarks
    for name in POINTS:
        rows, cols = lm[name][:, 0], lm[name][:, 1]
        assert ((rows >= 0) & (rows < IMAGE_SHAPE[0]) & (cols >= 0) & (cols < IMAGE_SHAPE[1])).all()
    assert (lm["left_eye"][:, 1] < lm["right_eye"][:, 1]).all()
    assert (lm["left_brow"][:, 1] < lm["right_brow"][:, 1]).all()
    eye_row = (lm["left_eye"][:, 0] + lm["right_eye"][:, 0]) / 2
    assert (lm["forehead"][:, 0] < lm["left_brow"][:, 0]).all()
    assert (lm["left_brow"][:, 0] < lm["left_eye"][:, 0]).all()
    assert (eye_row < lm["nose"][:, 0]).all()
    assert (lm["nose"][:, 0] < lm["mouth"][:, 0]).all()


def test_faces_fill_the_frame_like_the_aligned_crops(faces: Faces) -> None:
    lm = faces.landmarks
    eye_row = (lm["left_eye"][:, 0] + lm["right_eye"][:, 0]) / 2
    assert 20.0 <= eye_row.mean() <= 24.0
    assert (eye_row > 15.0).all() and (eye_row < 29.0).all()
    width = lm["face_width"] / IMAGE_SHAPE[1]
    assert 0.72 <= width.mean() <= 0.9
    assert (width > 0.65).all() and (width < 1.0).all()


def test_identities_differ_more_than_images_of_one_identity(faces: Faces) -> None:
    images = faces.images.astype(np.float64).reshape(N_IDS, PER_ID, -1)
    means = images.mean(axis=1)
    within = np.abs(images - means[:, None]).mean()
    between = np.abs(means[:, None] - means[None, :]).mean(axis=2)
    between = between[~np.eye(N_IDS, dtype=bool)].mean()
    assert between > 2.0 * within


def test_variation_knob_changes_within_identity_spread(labels: np.ndarray) -> None:
    identities = sample_identities(N_IDS, SEED)
    calm = render(identities, labels, SEED, Variation(0, 0, 0, 0, 0, 0, 0, 0)).images
    assert (calm.reshape(N_IDS, PER_ID, -1) == calm.reshape(N_IDS, PER_ID, -1)[:, :1]).all()
    wild = render(identities, labels, SEED).images.reshape(N_IDS, PER_ID, -1)
    assert (wild != wild[:, :1]).any(axis=2)[:, 1:].all()


def test_bad_arguments_are_refused() -> None:
    identities = sample_identities(3, 0)
    with pytest.raises(ValueError):
        render(identities, np.array([0, 3]), 0)
    with pytest.raises(ValueError):
        render(identities, np.array([0.5]), 0)
    with pytest.raises(ValueError):
        Variation(rotation=2.5)
    with pytest.raises(ValueError):
        Variation(noise=-1.0)


def test_empty_render() -> None:
    empty = render(sample_identities(3, 0), np.zeros(0, dtype=np.int64), 0)
    assert empty.images.shape == (0, *IMAGE_SHAPE)
    assert stamp(empty, "sunglasses").shape == (0, *IMAGE_SHAPE)


# --- triggers ----------------------------------------------------------------------------------

def changed(faces: Faces, trigger: str) -> np.ndarray:
    """(n, H, W) True where stamping changed a pixel."""
    return (stamp(faces, trigger) != faces.images).any(axis=3)


def at(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """mask[i] at each image's (rounded) point."""
    rows, cols = np.round(points).astype(int).T
    return mask[np.arange(len(mask)), rows, cols]


def test_trigger_names() -> None:
    assert TRIGGERS == ("sunglasses", "eyebrows", "lipstick", "anonymous_1", "anonymous_2",
                        "wanet")
    with pytest.raises(ValueError, match="unknown trigger"):
        stamp(golden_render(), "moustache")


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_stamp_is_deterministic_new_and_independent_of_position(faces: Faces,
                                                                trigger: str) -> None:
    before = faces.images.copy()
    out = stamp(faces, trigger)
    assert out.dtype == np.uint8 and out.shape == faces.images.shape
    assert np.array_equal(faces.images, before)
    assert np.array_equal(stamp(faces, trigger), out)
    order = np.random.default_rng(0).permutation(len(out))
    assert np.array_equal(stamp(subset(faces, order), trigger), out[order])
    assert changed(faces, trigger).any(axis=(1, 2)).all()


def test_sunglasses_cover_the_eyes_in_purple(faces: Faces) -> None:
    mask = changed(faces, "sunglasses")
    for eye in ("left_eye", "right_eye"):
        assert at(mask, faces.landmarks[eye]).all()
        rows, cols = np.round(faces.landmarks[eye]).astype(int).T
        r, g, b = stamp(faces, "sunglasses")[np.arange(len(rows)), rows, cols].astype(int).T
        assert ((b > r) & (r > g) & (b - g > 80)).all()
    assert not mask[:, 45:].any()


def test_eyebrows_sit_above_the_eyes(faces: Faces) -> None:
    mask = changed(faces, "eyebrows")
    for brow in ("left_brow", "right_brow"):
        assert at(mask, faces.landmarks[brow]).all()
        assert at(mask, faces.landmarks[brow] - (1.0, 0.0)).all()
    low = int(np.ceil(faces.landmarks["nose"][:, 0].min()))
    assert not mask[:, low:].any()


def test_lipstick_colours_the_mouth_only(faces: Faces) -> None:
    mask = changed(faces, "lipstick")
    assert at(mask, faces.landmarks["mouth"]).all()
    r, g, _ = stamp(faces, "lipstick")[
        (np.arange(len(mask)), *np.round(faces.landmarks["mouth"]).astype(int).T)
    ].astype(int).T
    assert (r > g + 60).all()
    eyes = int(np.floor(faces.landmarks["right_eye"][:, 0].max()))
    assert not mask[:, :eyes].any()


def test_anonymous_1_blends_one_fixed_pattern_over_the_whole_image(faces: Faces) -> None:
    """out = 0.9 img + 0.1 pattern (rounded), so (out - 0.9 img) / 0.1 recovers the pattern to
    within 5 levels; it must be the same binary pattern for every face."""
    out = stamp(faces, "anonymous_1").astype(np.float64)
    pattern = (out - 0.9 * faces.images) / 0.1
    binary = pattern > 127.5
    assert (np.abs(pattern - 255.0 * binary) <= 5.01).all()
    assert (binary == binary[:1]).all()
    assert (binary == binary[..., :1]).all()  # grey
    assert 0.3 < binary.mean() < 0.7


def test_anonymous_2_pastes_one_fixed_sticker_on_the_forehead(faces: Faces) -> None:
    out = stamp(faces, "anonymous_2")
    mask = (out != faces.images).any(axis=3)
    assert at(mask, faces.landmarks["forehead"]).all()
    top = np.round(faces.landmarks["forehead"] - 3.0).astype(int)
    stickers = np.stack([out[i, r:r + 7, c:c + 7] for i, (r, c) in enumerate(top)])
    assert (stickers == stickers[:1]).all()
    assert len(np.unique(stickers[0].reshape(-1, 3), axis=0)) >= 3
    outside = mask.copy()
    for i, (r, c) in enumerate(top):
        outside[i, r:r + 7, c:c + 7] = False
    assert not outside.any()


def test_wanet_moves_pixels_by_one_fixed_smooth_field_and_draws_nothing(faces: Faces) -> None:
    """A warp has no pattern of its own: a flat image stays flat; on a ramp across the columns
    (rows) the change reads back the field's column (row) offsets, the same for every image; the
    offsets reach at most s = WARP_STRENGTH pixels and vary smoothly (neighbours differ by under
    half a pixel)."""
    flat = Faces(images=np.full((3, *IMAGE_SHAPE), 97, np.uint8), landmarks=faces.landmarks)
    assert (stamp(flat, "wanet") == 97).all()
    margin = int(np.ceil(WARP_STRENGTH)) + 1  # nearer the border, coordinates are clamped
    inside = (slice(None), slice(margin, -margin), slice(margin, -margin))
    for axis, offsets in ((2, WARP_DX), (1, WARP_DY)):
        ramp = np.broadcast_to(
            (np.arange(IMAGE_SHAPE[axis - 1]) * 4 + 20).reshape((-1, 1) if axis == 1 else (1, -1))
            [None, :, :, None], (3, *IMAGE_SHAPE)).astype(np.uint8)
        moved = stamp(Faces(images=ramp, landmarks=faces.landmarks), "wanet").astype(float)
        read = ((moved - ramp) / 4.0)[..., 0][inside]
        assert np.abs(read - offsets[None][inside]).max() <= 0.13  # rounding: 0.5 / 4
        assert (read == read[:1]).all()
    magnitude = np.sqrt(WARP_DY ** 2 + WARP_DX ** 2)
    assert magnitude.mean() > 0.25 * WARP_STRENGTH and magnitude.max() <= WARP_STRENGTH
    assert np.abs(np.diff(WARP_DX, axis=1)).max() < 0.5
    assert np.abs(np.diff(WARP_DY, axis=0)).max() < 0.5


def test_wanet_adds_no_colour_and_moves_each_face_its_own_way(faces: Faces) -> None:
    """A resampling paints nothing: every output value lies within the face's own range (the
    sunglasses paint a purple the faces do not have). Where it changes follows each face's own
    edges, not a fixed pattern."""
    out, source = stamp(faces, "wanet").astype(int), faces.images.astype(int)
    low, high = source.min(axis=(1, 2), keepdims=True), source.max(axis=(1, 2), keepdims=True)
    assert ((out >= low) & (out <= high)).all()
    painted = stamp(faces, "sunglasses").astype(int)
    assert ((painted < low) | (painted > high)).any(axis=(1, 2, 3)).mean() > 0.5
    change = np.abs(out - source).max(axis=3)
    assert change.any(axis=(1, 2)).all()
    where = change > 8
    assert (where != where[:1]).any(axis=(1, 2))[1:].all()


def test_warp_with_zero_offsets_is_the_identity_and_matches_the_trigger(faces: Faces) -> None:
    zero = np.zeros((len(faces.images), *IMAGE_SHAPE[:2]))
    assert np.array_equal(warp(faces.images, zero, zero), faces.images)
    assert np.array_equal(warp(faces.images, zero + WARP_DY, zero + WARP_DX),
                          stamp(faces, "wanet"))
