"""The translation SavedModel: ``serving_default`` takes ``source`` (``tf.string [None]``) and
returns ``translations`` (``tf.string [None]``) and ``scores`` (``float32 [None]``).

Tokenization, decoding and detokenization run inside the graph, so serving needs only
``tensorflow`` and ``tensorflow_text``, not tfkd, keras-hub or the user's own layer modules.
Built on ``keras.export.ExportArchive``, which tracks Keras variables so that both the TF2
loader and TF Serving's session-based loader (``saved_model_cli run``) restore them.
"""

import os

import keras
import tensorflow as tf


def write_translation_saved_model(translator, path):
    from tfkd.export import track_tokenizers

    archive = keras.export.ExportArchive()
    track_tokenizers(archive, translator.source_tokenizer, translator.target_tokenizer)
    # the endpoint's variables are tracked from the traced graph; archive.track(model) would
    # also store the model's Keras variables, a second copy of every weight
    archive.add_endpoint(
        "serving_default",
        translator._translate,
        input_signature=[tf.TensorSpec([None], tf.string, name="source")],
    )
    archive.write_out(path, verbose=False)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
