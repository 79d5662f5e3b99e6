"""Legacy HDF5 model files that Keras 2 (the 2020 contest's TensorFlow 2.x) and Keras 3 both load.

A legacy ``.h5`` full-model file holds the weights (one group per layer, read by the names in
each group's ``weight_names``) and, in the ``model_config`` attribute, the model's configuration
as JSON. Keras 3 reads the configurations Keras 2 wrote, but not the other way round: Keras 3
writes dtypes as ``DTypePolicy`` objects, inbound nodes as ``{"args": [...], "kwargs": {...}}``
with serialized tensors, ``InputLayer`` shapes as ``batch_shape`` and keys Keras 2's constructors
refuse (``optional``, ``quantization_config``, ``input_axes``), so ``keras.models.load_model`` of
the 2020 era fails on every file Keras 3 saved. The weights themselves are laid out the same way
by both.

:func:`keras2_config` rewrites such a configuration into the form Keras 2.15 writes, which Keras 3
still reads to the same network; :func:`write_keras2_config` does it in place in a file, leaving
every weight byte untouched. Only a plain functional network of the layer types in
:data:`KERAS2_LAYER_KEYS` (the contest's DeepID and the like) is rewritten: anything else raises
:class:`ValueError` rather than writing a file one of the two versions would misread.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import h5py
import numpy as np

_BASE = ("name", "trainable", "dtype")
_CONV = _BASE + ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
                 "groups", "activation", "use_bias", "kernel_initializer", "bias_initializer",
                 "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                 "kernel_constraint", "bias_constraint")
_POOL = _BASE + ("pool_size", "padding", "strides", "data_format")
_GLOBAL_POOL = _BASE + ("data_format", "keepdims")

KERAS2_LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "InputLayer": ("batch_input_shape", "dtype", "sparse", "ragged", "name"),
    "Conv2D": _CONV,
    "Dense": _BASE + ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer",
                      "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                      "kernel_constraint", "bias_constraint"),
    "MaxPooling2D": _POOL,
    "AveragePooling2D": _POOL,
    "GlobalAveragePooling2D": _GLOBAL_POOL,
    "GlobalMaxPooling2D": _GLOBAL_POOL,
    "Flatten": _BASE + ("data_format",),
    "Reshape": _BASE + ("target_shape",),
    "ZeroPadding2D": _BASE + ("padding", "data_format"),
    "Activation": _BASE + ("activation",),
    "ReLU": _BASE + ("max_value", "negative_slope", "threshold"),
    "Softmax": _BASE + ("axis",),
    "Dropout": _BASE + ("rate", "noise_shape", "seed"),
    "BatchNormalization": _BASE + ("axis", "momentum", "epsilon", "center", "scale",
                                   "beta_initializer", "gamma_initializer",
                                   "moving_mean_initializer", "moving_variance_initializer",
                                   "beta_regularizer", "gamma_regularizer", "beta_constraint",
                                   "gamma_constraint"),
    "Add": _BASE, "Subtract": _BASE, "Multiply": _BASE, "Average": _BASE, "Maximum": _BASE,
    "Minimum": _BASE,
    "Concatenate": _BASE + ("axis",),
}
"""The layer types rewritten, each with the configuration keys Keras 2.15's ``get_config`` writes
(and so its constructor accepts)."""

_KERAS3_ONLY: dict[str, tuple[Any, ...]] = {
    "optional": (False,), "quantization_config": (None,), "synchronized": (False, True),
    "renorm": (False,), "renorm_clipping": (None,), "input_axes": (None,), "output_axes": (None,),
}
"""Keys Keras 3 writes and Keras 2 lacks, each with the values at which dropping the key keeps
the network's answers (``synchronized`` only matters in training); any other value is refused."""
_KERAS3_IGNORED_WHEN_OFF = {"renorm_momentum": "renorm"}
"""Keys dropped freely when the key they depend on is off."""

_VARIANCE = ("seed",)
KERAS2_INITIALIZER_KEYS: dict[str, tuple[str, ...]] = {
    "GlorotUniform": _VARIANCE, "GlorotNormal": _VARIANCE, "HeUniform": _VARIANCE,
    "HeNormal": _VARIANCE, "LecunUniform": _VARIANCE, "LecunNormal": _VARIANCE,
    "VarianceScaling": ("scale", "mode", "distribution", "seed"),
    "Zeros": (), "Ones": (), "Constant": ("value",),
    "RandomNormal": ("mean", "stddev", "seed"), "RandomUniform": ("minval", "maxval", "seed"),
    "TruncatedNormal": ("mean", "stddev", "seed"), "Orthogonal": ("gain", "seed"),
}
"""Initializers (kept in the configuration though loading never runs them), with Keras 2's keys."""


def _refuse(where: str, why: str) -> ValueError:
    return ValueError(f"{where}: cannot write a Keras-2 configuration: {why}")


def _drop_keras3_keys(where: str, config: dict[str, Any], keep: tuple[str, ...]) -> None:
    for key in [key for key in config if key not in keep]:
        value = config[key]
        if key in _KERAS3_ONLY and value in _KERAS3_ONLY[key]:
            continue
        if key in _KERAS3_IGNORED_WHEN_OFF and not config.get(_KERAS3_IGNORED_WHEN_OFF[key]):
            continue
        raise _refuse(where, f"{key} = {value!r} has no Keras-2 equivalent")


def _initializer(where: str, value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    name = value.get("class_name")
    if name not in KERAS2_INITIALIZER_KEYS:
        raise _refuse(where, f"initializer {name!r} is not one this rewriting knows")
    config = dict(value.get("config") or {})
    keep = KERAS2_INITIALIZER_KEYS[name]
    _drop_keras3_keys(f"{where} ({name})", config, keep)
    return {"module": "keras.initializers", "class_name": name,
            "config": {key: config[key] for key in keep if key in config},
            "registered_name": None}


def _dtype(value: Any) -> Any:
    """A Keras-3 ``DTypePolicy`` dict as the policy name Keras 2 writes (``"float32"``)."""
    if isinstance(value, dict):
        return value.get("config", {}).get("name", value.get("class_name"))
    return value


def _layer_config(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    where = f"layer {config.get('name')!r} ({class_name})"
    config = dict(config)
    if class_name == "InputLayer" and "batch_shape" in config:
        config["batch_input_shape"] = config.pop("batch_shape")
    keep = KERAS2_LAYER_KEYS[class_name]
    _drop_keras3_keys(where, config, keep)
    out: dict[str, Any] = {}
    for key in keep:
        if key not in config:
            continue
        value = config[key]
        if key == "dtype":
            value = _dtype(value)
        elif key.endswith("_initializer"):
            value = _initializer(where, value)
        out[key] = value
    return out


def _history(where: str, tensor: Any) -> list[Any]:
    """One serialized input tensor as Keras 2's ``[layer, node_index, tensor_index, kwargs]``."""
    if isinstance(tensor, list) and len(tensor) in (3, 4) and isinstance(tensor[0], str):
        return [*tensor[:3], tensor[3] if len(tensor) == 4 else {}]  # already Keras 2's form
    if isinstance(tensor, dict) and tensor.get("class_name") == "__keras_tensor__":
        layer, node_index, tensor_index = tensor["config"]["keras_history"]
        return [layer, node_index, tensor_index, {}]
    raise _refuse(where, f"an input that is not a layer's output ({json.dumps(tensor)[:80]})")


def _node(where: str, node: Any) -> list[list[Any]]:
    """One inbound node (one call of the layer) in Keras 2's form: the list of its inputs."""
    if isinstance(node, list):  # Keras 2's form: a list of input tensors
        return [_history(where, tensor) for tensor in node]
    if not isinstance(node, dict) or set(node) - {"args", "kwargs"}:
        raise _refuse(where, f"unknown inbound node {json.dumps(node)[:80]}")
    if node.get("kwargs"):
        raise _refuse(where, f"call arguments {sorted(node['kwargs'])} have no Keras-2 form")
    args = node.get("args", [])
    if len(args) != 1:
        raise _refuse(where, f"a call with {len(args)} positional arguments")
    inputs = args[0] if isinstance(args[0], list) else [args[0]]  # a merge layer takes a list
    return [_history(where, tensor) for tensor in inputs]


def keras2_config(model_config: dict[str, Any]) -> dict[str, Any]:
    """The Keras-2.15 form of a functional model's configuration (a legacy file's
    ``model_config``), which Keras 3 reads to the same network. Idempotent: a Keras-2
    configuration comes back unchanged in meaning."""
    if model_config.get("class_name") not in ("Functional", "Model"):
        raise _refuse("model", f"a {model_config.get('class_name')!r} model, not a functional one")
    config = model_config["config"]
    layers = []
    for layer in config["layers"]:
        class_name = layer["class_name"]
        where = f"layer {layer.get('name')!r} ({class_name})"
        if class_name not in KERAS2_LAYER_KEYS:
            raise _refuse(where, "a layer type this rewriting does not know")
        layers.append({"class_name": class_name,
                       "config": _layer_config(class_name, layer["config"]),
                       "name": layer["name"],
                       "inbound_nodes": [_node(where, node) for node in layer["inbound_nodes"]]})
    out: dict[str, Any] = {"name": config["name"]}
    if "trainable" in config:
        out["trainable"] = config["trainable"]
    # A single input or output stays a bare [layer, node, tensor] triple: Keras 2 reads it as one
    # tensor, and Keras 3 would read a one-element list as a list of outputs.
    out.update(layers=layers, input_layers=config["input_layers"],
               output_layers=config["output_layers"])
    return {"class_name": "Functional", "config": out}


def write_keras2_config(path: Path) -> bool:
    """Rewrite a legacy ``.h5`` full-model file's ``model_config`` into Keras 2's form, in place.

    Nothing else in the file changes (the weights keep every byte). Returns whether the
    attribute changed; a file already in Keras 2's form is left as it is.
    """
    with h5py.File(path, "r+") as handle:
        raw = handle.attrs.get("model_config")
        if raw is None:
            raise ValueError(f"{path}: no model_config (a weights-only file?)")
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        new = json.dumps(keras2_config(json.loads(text)))
        if new == text:
            return False
        handle.attrs["model_config"] = new  # a str, as Keras writes it
    return True


KERAS2_PREDICT = """\
import sys

import numpy as np
import keras
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)
inputs, out, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
images = np.load(inputs)
answers = {}
for index, path in enumerate(paths):
    model = keras.models.load_model(path)  # as a 2020 script calls it
    answers[f"out{index}"] = np.asarray(model(images, training=False))
answers["version"] = np.array(keras.__version__)
np.savez(out, **answers)
"""
"""What :func:`keras2_outputs` runs in the other environment: a 2020 script's
``keras.models.load_model(path)``, then the network on the given (already scaled) inputs."""


def keras2_outputs(python: Path, paths: list[Path], inputs: np.ndarray,
                   work: Path) -> tuple[str, list[np.ndarray]]:
    """Load each of ``paths`` with ``keras.models.load_model`` in the environment of ``python``
    (the benchmark's ``keras2`` one) and run it on ``inputs``: (its Keras version, the outputs).
    ``work`` is a scratch folder (also the child's home)."""
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "inputs.npy", inputs)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [str(python), "-c", KERAS2_PREDICT, str(work / "inputs.npy"), str(work / "outputs.npz"),
         *[str(Path(path).resolve()) for path in paths]],
        env=env, cwd=work, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{python} could not load the models: {done.stderr[-2000:]}")
    with np.load(work / "outputs.npz") as answers:
        return str(answers["version"]), [answers[f"out{i}"] for i in range(len(paths))]
