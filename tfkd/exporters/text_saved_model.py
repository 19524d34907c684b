"""The SavedModel every task exports: raw text in, the task's outputs out, in one graph.

Tokenization, the model and detokenization run inside the graph, so serving needs only
``tensorflow`` and ``tensorflow_text``, not tfkd, keras-hub or the user's own layer modules.
Built on ``keras.export.ExportArchive``, which tracks Keras variables so that both the TF2
loader and TF Serving's session-based loader (``saved_model_cli run``) restore them.
``assets.extra/tfkd.json`` says what the signatures read and return (``tfkd translate`` on
an export reads it).
"""

import hashlib
import json
import os
import types

import keras
import tensorflow as tf

INFO_FILE = os.path.join("assets.extra", "tfkd.json")


def write_text_saved_model(path, endpoints, info, tokenizers=(), resources=()):
    """Write a SavedModel to the new folder ``path`` (the exporter renames it into place).

    Args:
        path: the folder to write.
        endpoints: ``{signature name: function}``, each function of one ``tf.string [None]``
            batch returning a dict of tensors; ``serving_default`` among them.
        info: what ``assets.extra/tfkd.json`` holds: ``task``, ``input`` (the name of every
            signature's input), ``output`` (the output that carries the text), ``batch_size``
            (lines per call), and whatever else the task adds.
        tokenizers: the in-graph tokenizers (their SentencePiece models: :func:`track_tokenizers`).
        resources: other TensorFlow resources the graph reads that Keras does not track (a
            tokenizer's lookup tables kept as plain attributes, a sampler's seed state).
    """
    archive = keras.export.ExportArchive()
    track_tokenizers(archive, *tokenizers)
    for resource in resources:
        archive.track(resource)
    text = tf.TensorSpec([None], tf.string, name=info["input"])
    # the endpoints' variables are tracked from the traced graph; archive.track(model) would
    # also store the model's Keras variables, a second copy of every weight
    for name, function in endpoints.items():
        archive.add_endpoint(name, function, input_signature=[text])
    archive.write_out(path, verbose=False)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, INFO_FILE), "w") as f:
        json.dump(info, f)


def track_tokenizers(archive, *tokenizers):
    """Track the TensorFlow resources of in-graph tokenizers (a SentencePiece model: a resource
    Keras does not track) in a ``keras.export.ExportArchive``, so the endpoints that capture
    them can be saved; WordPiece tokenizers hold none.

    tensorflow-text creates a loaded SentencePiece model under one default name, so the second
    model of a SavedModel (a translation's target side) would load as the first; each is
    named by its content here instead."""
    for tokenizer in tokenizers:
        sentencepiece = getattr(tokenizer, "_sentence_piece", None)  # keras-hub's tensorflow-text tokenizer
        if sentencepiece is not None:
            resource = sentencepiece._model_resource
            resource._create_resource = types.MethodType(_named_sentencepiece_resource, resource)
            archive.track(sentencepiece)


def _named_sentencepiece_resource(resource):
    from tensorflow_text.python.ops.sentencepiece_tokenizer import gen_sentencepiece_tokenizer

    model = resource._model
    model = model if isinstance(model, bytes) else model.numpy()
    return gen_sentencepiece_tokenizer.sentencepiece_op(
        model=model, shared_name=f"tfkd_sentencepiece_{hashlib.sha256(model).hexdigest()[:16]}"
    )
