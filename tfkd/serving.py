"""Reading the SavedModels tfkd exports: where one is (a version folder or a TF Serving base
path), what its ``assets.extra/tfkd.json`` says (the task, the signature's text input and
output, the spec's ``decode.batch_size``), and a predictor of text lines over its
``serving_default`` signature. TensorFlow is imported only by :func:`saved_model_predictor`.
"""

import json
import logging
import math
import os

log = logging.getLogger("tfkd")

# where an export keeps what tfkd knows about it, relative to the SavedModel's folder
EXPORT_INFO = os.path.join("assets.extra", "tfkd.json")
# lines per call of a SavedModel that does not record its spec's decode.batch_size
SAVED_MODEL_BATCH_SIZE = 64


def find_saved_model(path):
    """``path`` itself, or the newest numeric version under it (a TF Serving base path);
    ``None`` when it is neither."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted((int(d) for d in os.listdir(path) if d.isdigit()), reverse=True) if os.path.isdir(path) else []
    if versions:
        return os.path.join(path, str(versions[0]))
    return None


def version_folders(path):
    """The version folders of the model folder ``path`` in any format (``3/``,
    ``4.ctranslate2/``: versions are numbered across formats), newest first; ``[]`` when
    ``path`` is not a model folder."""
    if not os.path.isdir(path) or os.path.exists(os.path.join(path, "saved_model.pb")):
        return []
    versions = []
    for name in os.listdir(path):
        number, _, _ = name.partition(".")
        if number.isdigit() and os.path.isdir(os.path.join(path, name)):
            versions.append((int(number), name))
    return [os.path.join(path, name) for _, name in sorted(versions, reverse=True)]


def find_export(path):
    """``(exporter class, folder)`` of the export at ``path`` that tfkd can serve (a SavedModel,
    a CTranslate2 folder, a registered exporter's own), or for a model folder its newest version
    that tfkd can serve, whatever its format; else None."""
    from tfkd import registry

    for candidate in version_folders(path) or [path]:
        for name in registry.names("exporter"):
            exporter = registry.lookup("exporter", name)
            found = exporter.find(candidate)
            if found:
                return exporter, found
    return None


def read_export_info(saved_model):
    """The ``assets.extra/tfkd.json`` of the SavedModel folder ``saved_model`` as a dict
    (``task``, ``input``, ``output``, ``batch_size``, ...); ``{}`` for a SavedModel tfkd did
    not write."""
    path = os.path.join(saved_model, EXPORT_INFO)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def warn_of_cut_inputs(lengths, max_tokens, setting):
    """One warning for the inputs whose token counts ``lengths`` pass ``max_tokens``, which a
    student (or an export of it) reads from their first ``max_tokens`` tokens (``setting``:
    the spec key that set it): how many, which (by input number, 1-based), the longest;
    returns their input numbers."""
    cut = [i + 1 for i, length in enumerate(lengths) if length > max_tokens]
    if cut:
        shown = ", ".join(str(i) for i in cut[:10]) + (", ..." if len(cut) > 10 else "")
        log.warning(
            "%d of %d inputs are longer than the %d tokens the student reads (%s) and are read "
            "from their first %d: inputs %s (the longest has %d); split them into shorter inputs "
            "to have them read whole",
            len(cut),
            len(lengths),
            max_tokens,
            setting,
            max_tokens,
            shown,
            int(max(lengths)),
        )
    return cut


def _warn_of_cut_inputs_by_signature(model, info, lines):
    """:func:`warn_of_cut_inputs` for an export whose ``tfkd.json`` names, under
    ``long_inputs``, the signature that counts each line's tokens (``signature``, its
    ``output``), the ``max_tokens`` the graph keeps and the ``setting`` that set it."""
    long_inputs = info.get("long_inputs")
    if not long_inputs or not lines:
        return
    import tensorflow as tf

    count = model.signatures[long_inputs["signature"]]
    lengths = []
    for start in range(0, len(lines), info["batch_size"]):
        batch = tf.constant(lines[start : start + info["batch_size"]])
        lengths.extend(count(**{info["input"]: batch})[long_inputs["output"]].numpy().tolist())
    warn_of_cut_inputs(lengths, long_inputs["max_tokens"], long_inputs["setting"])


def saved_model_predictor(saved_model, batch_size=None):
    """``predict(lines) -> outputs``: the strings of the SavedModel's ``serving_default``
    signature for a list of strings, in input order, ``batch_size`` lines a call (default: the
    export's ``batch_size``, else ``SAVED_MODEL_BATCH_SIZE``). The text input and output are
    those :func:`read_export_info` names, else the signature's only input and its first string
    output."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the ops the graph uses)

    model = tf.saved_model.load(saved_model)
    serve = model.signatures["serving_default"]
    info = {
        "input": next(iter(serve.structured_input_signature[1])),
        "output": next(k for k, v in serve.structured_outputs.items() if v.dtype == tf.string),
        "batch_size": SAVED_MODEL_BATCH_SIZE,
    }
    info.update(read_export_info(saved_model))
    batch_size = batch_size or info["batch_size"]

    def predict(lines):
        from tfkd.progress import progress_bar

        _warn_of_cut_inputs_by_signature(model, {**info, "batch_size": batch_size}, lines)
        # length-sorted batches pad least; outputs in input order
        order = sorted(range(len(lines)), key=lambda i: len(lines[i].split()))
        outputs = [None] * len(lines)
        bar = progress_bar(math.ceil(len(lines) / batch_size), "batch")
        for start in range(0, len(lines), batch_size):
            index = order[start : start + batch_size]
            result = serve(**{info["input"]: tf.constant([lines[i] for i in index])})
            for i, output in zip(index, result[info["output"]].numpy()):
                outputs[i] = output.decode("utf-8")
            if bar:
                bar.update(start // batch_size + 1)
        return outputs

    return predict


__all__ = [
    "EXPORT_INFO",
    "warn_of_cut_inputs",
    "SAVED_MODEL_BATCH_SIZE",
    "find_export",
    "version_folders",
    "find_saved_model",
    "read_export_info",
    "saved_model_predictor",
]
