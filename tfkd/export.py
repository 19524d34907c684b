"""SavedModels for TF Serving, written atomically into ``<out>/<model_name>/<version>/``.

What the SavedModel computes is the task's business (:meth:`tfkd.tasks.Task.export`); this
module owns the layout TF Serving expects and the guarantee that a version folder is either
complete or absent.
"""

import hashlib
import logging
import os
import shutil
import time
import types

from tfkd.errors import StageError
from tfkd.runner import move_into_place

log = logging.getLogger("tfkd")


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
        model=model, shared_name=f"tfkd_sentencepiece_{hashlib.sha256(model).hexdigest()[:16]}")


def export_saved_model(write, out_dir, model_name, version):
    """Call ``write(path)`` into a hidden temporary folder beside the target (TF Serving ignores
    non-numeric folder names) and rename it to ``<out_dir>/<model_name>/<version>/``; returns
    that path."""
    base = os.path.join(out_dir, model_name)
    final = os.path.join(base, str(version))
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(base, f".tmp-{version}-{os.getpid()}-{int(time.time() * 1000)}")
    try:
        write(tmp)
        move_into_place(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def export_adapters(student, out_dir, model_name, version):
    """Write ``student``'s trained weights and config alone (``student.save_adapters(path)``) to
    ``<out_dir>/<model_name>/<version>.adapters.safetensors``, atomically; returns that path.
    TF Serving ignores the file (its versions are numeric folders)."""
    from tfkd.models.abilities import AdapterStudent

    if not isinstance(student, AdapterStudent):
        raise StageError(f"export.adapters_only: a {type(student).__name__} student has no adapters to write alone "
                         "(its weights are all trained); export the full model")
    base = os.path.join(out_dir, model_name)
    os.makedirs(base, exist_ok=True)
    final = os.path.join(base, f"{version}.adapters.safetensors")
    tmp = os.path.join(base, f".tmp-{version}-{os.getpid()}.safetensors")
    try:
        student.save_adapters(tmp)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return final


def existing_versions(out_dir, model_name):
    """The version numbers already under ``<out_dir>/<model_name>/`` (SavedModel folders and
    adapter files)."""
    base = os.path.join(out_dir, model_name)
    names = os.listdir(base) if os.path.isdir(base) else []
    return sorted({int(n.split(".")[0]) for n in names if n.split(".")[0].isdigit()})


def choose_version(out_dir, model_name, requested, default):
    """The version ``tfkd export`` writes: ``requested`` (a number, or ``"auto"``: one more than
    the newest there, else ``default``), never one that exists (TF Serving reads a new number
    as a new model; rewriting one in place would change what a loaded version serves)."""
    versions = existing_versions(out_dir, model_name)
    if requested == "auto":
        return versions[-1] + 1 if versions else default
    version = default if requested is None else int(requested)
    if version in versions:
        raise StageError(f"{os.path.join(out_dir, model_name, str(version))}: version {version} exists; "
                         f"export a new one with --version auto (next: {versions[-1] + 1}) or --version N")
    return version


def directory_size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
