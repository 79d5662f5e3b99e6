"""Loading submitted Keras models and running them over image sets (the load and predict
stages, as the worker runs them).

Submissions arrive as full-model files (legacy Keras-2 ``.h5`` or Keras-3 ``.keras``) or as
weights-only files for a known architecture (the contest's DeepID network). Every way such a file
can be unusable must end as a one-line :class:`SubmissionError` naming the file, because the grader
keeps going and prints the message verbatim in the leaderboard; Keras's own exceptions are long,
multi-line and differ between the two formats, so this module checks the file itself first and
only then hands it to Keras.

A ``Lambda`` layer is a piece of Python code stored in the model file: loading it means running
code chosen by the submitter. It is refused unless the organizers opt in, and the check is done on
the stored configuration *before* Keras touches the file, so the refusal does not depend on how a
given Keras version implements ``safe_mode``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import tensorflow as tf

from harness.errors import SubmissionError
from harness.nets.deepid import IMAGE_SHAPE, LEGACY_SUFFIXES, build_deepid

_MAX_CAUSE_CHARS = 300


def _cause(exc: BaseException) -> str:
    """Reduce a library exception to a short one-line cause (no traceback, no advice paragraphs).

    Keras's messages run to many lines (advice, tensor dumps); the first line usually says it
    all, except when it ends in a colon and the reason is on the next line.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    if len(text) > _MAX_CAUSE_CHARS:
        text = text[: _MAX_CAUSE_CHARS - 3] + "..."
    return text


def _require_file(path: Path) -> None:
    """Refuse a missing path or a directory up front: Keras reports these confusingly."""
    if not path.exists():
        raise SubmissionError(f"{path}: file not found")
    if not path.is_file():
        raise SubmissionError(f"{path}: not a regular file")


def _contains_lambda(config: Any) -> bool:
    """Whether a serialized model config holds a ``Lambda`` layer anywhere.

    Walks every dict and list rather than following known keys, so nested models, wrappers
    (``TimeDistributed``, ``Bidirectional``) and any future nesting scheme are all covered.
    """
    if isinstance(config, dict):
        if config.get("class_name") == "Lambda":
            return True
        return any(_contains_lambda(value) for value in config.values())
    if isinstance(config, list):
        return any(_contains_lambda(item) for item in config)
    return False


def _parse_config(path: Path, raw: str | bytes) -> Any:
    """Decode a stored JSON model config, refusing garbage with a message naming the file."""
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise SubmissionError(
            f"{path}: model configuration is not valid JSON ({_cause(exc)})"
        ) from exc


def _read_h5_config(path: Path) -> Any:
    """Read the ``model_config`` attribute of a legacy full-model HDF5 file."""
    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
    except OSError as exc:
        raise SubmissionError(f"{path}: not a readable HDF5 file ({_cause(exc)})") from exc
    if raw is None:
        raise SubmissionError(
            f"{path}: no model configuration in this HDF5 file (a weights-only file? "
            "submit it as weights for a named architecture)"
        )
    return _parse_config(path, raw)


def _read_keras_config(path: Path) -> Any:
    """Read ``config.json`` from a Keras-3 ``.keras`` zip archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read("config.json")
    except KeyError as exc:
        raise SubmissionError(f"{path}: .keras archive has no config.json") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise SubmissionError(f"{path}: not a readable .keras zip archive ({_cause(exc)})") from exc
    return _parse_config(path, raw)


def load_model_file(path: Path, *, allow_unsafe: bool = False) -> keras.Model:
    """Load a full model from a legacy ``.h5``/``.hdf5`` or a ``.keras`` file, for inference only.

    ``compile=False`` because contest-era files carry Keras-2 optimizer configs that Keras 3
    cannot compile, and grading needs no optimizer. ``allow_unsafe`` lets organizers accept
    ``Lambda`` layers (arbitrary code) for a trusted run; it also turns off Keras's ``safe_mode``,
    which for legacy ``.h5`` only the explicit argument does.
    """
    path = Path(path)
    _require_file(path)
    suffix = path.suffix.lower()
    if suffix in LEGACY_SUFFIXES:
        config = _read_h5_config(path)
    elif suffix == ".keras":
        config = _read_keras_config(path)
    else:
        raise SubmissionError(
            f"{path}: unsupported model file type {suffix or '(no suffix)'!r}; "
            "expected .h5 or .keras"
        )
    if not allow_unsafe and _contains_lambda(config):
        raise SubmissionError(
            f"{path}: Lambda layer = arbitrary code; "
            "organizers may allow it with --allow-unsafe-models"
        )
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=not allow_unsafe)
    except Exception as exc:  # Keras raises many types (ValueError, TypeError, KeyError, OSError).
        raise SubmissionError(f"{path}: cannot load model: {_cause(exc)}") from exc
    if not isinstance(model, keras.Model):
        raise SubmissionError(f"{path}: file holds a {type(model).__name__}, not a model")
    return model


def load_weights_file(path: Path, architecture: str, num_classes: int) -> keras.Model:
    """Build a known architecture and load a weights-only file into it.

    Only ``"deepid"`` is known: it is the contest's network, and the form in which the contest
    shipped its BadNets. Keras-2 weight files load by layer order, Keras-3 ``.weights.h5`` files
    by layer path; either way a shape or layer-count mismatch means the weights are for another
    network.
    """
    path = Path(path)
    if architecture != "deepid":
        raise SubmissionError(
            f"{path}: unknown architecture {architecture!r}; only 'deepid' is supported"
        )
    _require_file(path)
    if not h5py.is_hdf5(path):
        raise SubmissionError(f"{path}: not an HDF5 weights file")
    model = build_deepid(num_classes)
    try:
        model.load_weights(path)
    except Exception as exc:  # Keras raises ValueError on mismatches, OSError on broken files.
        raise SubmissionError(
            f"{path}: weights do not fit deepid with {num_classes} classes: {_cause(exc)}"
        ) from exc
    return model


def load_entry_model(kind: str, path: Path, *, architecture: str | None, num_classes: int,
                     allow_unsafe: bool = False) -> keras.Model:
    """The network of a ``model`` entry (a full-model file) or a ``weights`` entry (weights for
    ``architecture``), as the worker, the bench and the reference builds load them."""
    if kind == "weights":
        return load_weights_file(path, architecture or "", num_classes)
    return load_model_file(path, allow_unsafe=allow_unsafe)


def _shape_text(shape: tuple[int | None, ...]) -> str:
    """Format a shape the way Keras prints it, e.g. ``(None, 1283)``."""
    return "(" + ", ".join(str(dim) for dim in shape) + ")"


class KerasPredictor:
    """Classify image sets with a Keras model, fast and deterministically.

    The model runs under one ``tf.function`` trace with a fixed input signature: faster than
    ``model.predict`` on the CPU (docs/performance.md) and no progress bar on stdout. Images are
    scaled one batch at a time so a 12,830-image set never exists as a full float copy.

    A model with ``num_classes + 1`` outputs is a "flagging" model (the contest's "G" models): an
    argmax of ``num_classes`` means it rejects the input as poisoned, and its probability of class
    ``num_classes`` is a detection score (:meth:`answer`).
    """

    def __init__(
        self, model: keras.Model, num_classes: int, input_scale: float, batch_size: int = 1024
    ) -> None:
        """Check the model's input and output shapes and prepare the compiled forward pass."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        inputs = getattr(model, "inputs", None) or []
        outputs = getattr(model, "outputs", None) or []
        if len(inputs) != 1 or len(outputs) != 1:
            raise SubmissionError(
                f"model has {len(inputs)} input(s) and {len(outputs)} output(s); expected 1 and 1"
            )
        expected_in = (None, *IMAGE_SHAPE)
        in_shape = tuple(inputs[0].shape)
        if in_shape != expected_in:
            raise SubmissionError(
                f"model input shape {_shape_text(in_shape)}; expected {_shape_text(expected_in)}"
            )
        out_shape = tuple(outputs[0].shape)
        if out_shape not in ((None, num_classes), (None, num_classes + 1)):
            raise SubmissionError(
                f"model outputs shape {_shape_text(out_shape)}; expected (None, {num_classes}) "
                f"or (None, {num_classes + 1})"
            )
        self.model = model
        self.num_classes = num_classes
        self.flags = out_shape[1] == num_classes + 1
        """The model has the extra "poisoned" output, so it gives detection scores."""
        self.probabilities = ends_in_softmax(model)
        self.input_scale = float(input_scale)
        self.batch_size = batch_size

        @tf.function(input_signature=[tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32)])
        def forward(x: tf.Tensor) -> tf.Tensor:
            return model(x, training=False)

        self._forward = forward

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Return int64 labels for images shaped (n, 55, 47, 3) with pixel values 0..255."""
        return self.answer(images)[0]

    def answer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (int64) and, for a flagging model, detection scores (float64) of images shaped
        (n, 55, 47, 3) with pixel values 0..255; None for a model with ``num_classes`` outputs.

        The score is the probability of class ``num_classes`` ("poisoned"): the output as it is
        when the model's last layer is a softmax (:func:`ends_in_softmax`), else the softmax of
        the outputs, taken as logits. A monotone function of the outputs would rank images alike
        only for one output; the softmax makes every model's score a probability."""
        if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"images must be shaped (n, 55, 47, 3), got {images.shape}")
        scale = np.float32(self.input_scale)
        labels = np.empty(len(images), dtype=np.int64)
        detection = np.empty(len(images), dtype=np.float64) if self.flags else None
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size].astype(np.float32)
            batch *= scale
            try:
                scores = self._forward(tf.constant(batch)).numpy()
            except Exception as exc:  # Any failure inside the submitted graph is the submission's.
                raise SubmissionError(f"model failed to run: {_cause(exc)}") from exc
            if not np.isfinite(scores).all():
                raise SubmissionError("model produced non-finite outputs (NaN or infinity)")
            labels[start : start + len(batch)] = scores.argmax(axis=1)
            if detection is not None:
                detection[start : start + len(batch)] = poisoned_probability(
                    scores, self.probabilities)
        return labels, detection


def poisoned_probability(outputs: np.ndarray, probabilities: bool) -> np.ndarray:
    """The last column of (n, N+1) outputs as a probability: as it is when the outputs are
    probabilities already, else their softmax's (in float64, shifted by each row's maximum so
    that no exponential overflows)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if probabilities:
        return outputs[:, -1].copy()
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials[:, -1] / exponentials.sum(axis=1)


def ends_in_softmax(model: Any) -> bool:
    """Whether a model's output is a softmax: its last layer is a ``Softmax`` layer, or has the
    softmax activation (a ``Dense(..., activation="softmax")`` or an ``Activation("softmax")``),
    in Keras 2 or 3."""
    layers = getattr(model, "layers", None) or []
    if not layers:
        return False
    last = layers[-1]
    if type(last).__name__ == "Softmax":
        return True
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", None) == "softmax"
