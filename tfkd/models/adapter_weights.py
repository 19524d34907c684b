"""Adapter files: what an :class:`~tfkd.models.abilities.AdapterStudent` trained (its adapters
and its other trainable weights, never the frozen pretrained models) in one safetensors file
with the student's Keras config, rebuilt on top of the base checkpoints the config names
(``export.format: adapters``, ``tfkd export --format adapters``)."""

import json

import keras
import numpy as np
from keras import ops

from tfkd.models.abilities import AdapterStudent

ADAPTERS_FORMAT = "tfkd-adapters/1"


def _weight_key(model, variable):
    """``variable.path`` below the model's own name (the path's prefix depends on what first
    called the model, such as a trainer)."""
    parts = variable.path.split("/")
    if model.name in parts:
        parts = parts[parts.index(model.name) + 1 :]
    return "/".join(parts)


def _trained_weights(model):
    settings = model.adapter_settings if isinstance(model, AdapterStudent) else None
    if settings is None:
        raise ValueError(f"adapter files hold an AB-Net student's adapters; {type(model).__name__} has none")
    if not settings.frozen:
        raise ValueError(
            "adapter files need frozen BERTs (student.adapters.train: adapters); this student was "
            f"trained with adapters.train: {settings.train}, so its BERT weights changed too: "
            "export the full model"
        )
    weights = {}
    for variable in model.trainable_variables:
        key = _weight_key(model, variable)
        if key in weights:
            raise ValueError(f"two trainable weights of {model.name} have the path {key}")
        weights[key] = variable
    return weights


def save_adapters(model, path):
    """Write ``model``'s trainable weights (adapters, ``[LENGTH]`` vector and classifier,
    output-head parts; for :class:`ABNetEnc` also its decoder) and its Keras config to one
    safetensors file ``path``, keyed by variable path (below the model's name); the config is
    in the file's metadata (``"model"``: ``keras.saving.serialize_keras_object(model)`` as
    JSON; ``"format"``: ``tfkd-adapters/1``). The BERTs are not written: :func:`load_adapters`
    reads them from the checkpoints the config names. Needs ``adapters.train: adapters``."""
    from safetensors.numpy import save_file

    weights = _trained_weights(model)
    tensors = {key: np.ascontiguousarray(ops.convert_to_numpy(v)) for key, v in weights.items()}
    metadata = {"format": ADAPTERS_FORMAT, "model": json.dumps(keras.saving.serialize_keras_object(model))}
    save_file(tensors, str(path), metadata=metadata)


def load_adapters(path, model=None):
    """The student :func:`save_adapters` wrote to ``path``: rebuilt from its config on top of
    the base checkpoints (or ``model``, when given, already built likewise) with the saved
    weights assigned."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != ADAPTERS_FORMAT:
            raise ValueError(
                f"{path}: not a tfkd adapter file (format {metadata.get('format')!r}, expected {ADAPTERS_FORMAT})"
            )
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    if model is None:
        model = keras.saving.deserialize_keras_object(json.loads(metadata["model"]))
        dummy = np.ones((1, 2), "int32")
        model({"source_ids": dummy, "decoder_ids": dummy})
    weights = _trained_weights(model)
    missing, unexpected = sorted(set(weights) - set(tensors)), sorted(set(tensors) - set(weights))
    if missing or unexpected:
        raise ValueError(
            f"{path}: the adapter file does not match the model: missing {missing}, unexpected {unexpected}"
        )
    for key, variable in weights.items():
        if tuple(variable.shape) != tensors[key].shape:
            raise ValueError(
                f"{path}: {key} has shape {tensors[key].shape} in the file, {tuple(variable.shape)} in the model"
            )
        variable.assign(tensors[key])
    return model
