"""Text in, label out, in one TensorFlow graph: the classification SavedModel's.

``serving_default`` takes ``text`` (``tf.string [None]``) and returns ``label``
(``tf.string [None]``), ``label_id`` (``int32 [None]``) and ``probabilities``
(``float32 [None, num_classes]``). Tokenization ([CLS] text [SEP], truncated to ``max_tokens``)
runs inside the graph, so serving needs only ``tensorflow`` and ``tensorflow_text``. The same
:class:`TextClassifier` graph computes the in-process predictions (evaluation, ``tfkd
translate`` on a run directory), so they equal the export's.
"""

import math

import numpy as np
import tensorflow as tf

from tfkd.data import SpecialIds
from tfkd.progress import progress_bar
from tfkd.tasks.classification.data import frame, model_inputs


class TextClassifier(tf.Module):
    """Classify raw strings with a student.

    Args:
        model: a classifier, ``model({"token_ids", "padding_mask"}) -> logits [B, C]``.
        tokenizer: the run's keras-hub WordPiece tokenizer.
        label_names: the names of the label ids.
        max_tokens: longest input, [CLS] and [SEP] included (longer texts are truncated).
        batch_size: texts per call in :meth:`probabilities`.
    """

    def __init__(self, model, tokenizer, label_names, max_tokens, batch_size=64):
        super().__init__(name="text_classifier")
        self.model = model
        self.tokenizer = tokenizer
        self.special_ids = SpecialIds.of(tokenizer)
        self.label_names = list(label_names)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.classify = tf.function(self._classify, input_signature=[tf.TensorSpec([None], tf.string)])

    def _classify(self, texts):
        inputs = model_inputs(frame(self.tokenizer(texts), self.special_ids, self.max_tokens), self.special_ids)
        logits = tf.cast(self.model(inputs, training=False), tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "label": tf.gather(tf.constant(self.label_names, tf.string), label_id),
            "label_id": label_id,
            "probabilities": probabilities,
        }

    def probabilities(self, texts, progress=False):
        """``float32 [N, C]`` for a Python list, in length-sorted batches; in input order."""
        return probabilities_in_batches(self.classify, texts, len(self.label_names), self.batch_size, progress)


def probabilities_in_batches(classify, texts, num_classes, batch_size, progress=False):
    """Run ``classify`` (strings -> ``{"probabilities", ...}``; a :class:`TextClassifier`'s
    function or a loaded SavedModel signature) over length-sorted batches; ``float32 [N, C]``
    in input order."""
    order = np.argsort([len(t.split()) for t in texts], kind="stable")
    probabilities = np.zeros([len(texts), num_classes], np.float32)
    steps = math.ceil(len(texts) / batch_size)
    bar = progress_bar(steps, "batch") if progress else None
    for i in range(steps):
        index = order[i * batch_size : (i + 1) * batch_size]
        result = classify(tf.constant([texts[j] for j in index], tf.string))
        probabilities[index] = result["probabilities"].numpy()
        if bar:
            bar.update(i + 1)
    return probabilities
