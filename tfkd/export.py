"""SavedModels that take raw text, for TF Serving.

An export lives at ``<out>/<model_name>/<version>/`` (the layout of TF Serving's
``model_base_path``). Its ``serving_default`` signature takes ``source`` (``tf.string [None]``)
and returns ``translations`` (``tf.string [None]``) and ``scores`` (``float32 [None]``);
tokenization, decoding and detokenization run inside the graph, so serving needs only
``tensorflow`` and ``tensorflow_text``, not tfkd, keras-hub or the user's own layer modules.

Exporters are named parts chosen by the model type (``EXPORTERS``).
"""

import logging
import os
import shutil
import time

import keras
import tensorflow as tf

from tfkd.runner import move_into_place

log = logging.getLogger("tfkd")


class TranslationExporter:
    """Exports a :class:`tfkd.inference.Translator` as a text-in, text-out SavedModel.

    Built on ``keras.export.ExportArchive``, which tracks Keras variables so that both the
    TF2 loader and TF Serving's session-based loader (``saved_model_cli run``) restore them.
    """

    name = "translation"

    def export(self, translator, path):
        archive = keras.export.ExportArchive()
        archive.track(translator.model)
        archive.add_endpoint(
            "serving_default",
            translator._translate,
            input_signature=[tf.TensorSpec([None], tf.string, name="source")],
        )
        archive.write_out(path, verbose=False)


EXPORTERS = {TranslationExporter.name: TranslationExporter}


def export_saved_model(translator, out_dir, model_name, version, exporter="translation"):
    """Write ``<out_dir>/<model_name>/<version>/`` atomically; returns its path.

    The SavedModel is written to a hidden temporary folder beside the target (TF Serving
    ignores non-numeric folder names) and renamed into place, so a version folder either is
    complete or does not exist.
    """
    base = os.path.join(out_dir, model_name)
    final = os.path.join(base, str(version))
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(base, f".tmp-{version}-{os.getpid()}-{int(time.time() * 1000)}")
    try:
        EXPORTERS[exporter]().export(translator, tmp)
        move_into_place(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def directory_size(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
