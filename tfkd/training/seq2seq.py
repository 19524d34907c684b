"""The seq2seq training model: a student plus its loss, with a strategy-safe train_step."""

import keras
import tensorflow as tf
from keras import ops

from tfkd.training.losses import label_smoothed_cross_entropy


def global_sum(value):
    """Sum of ``value`` over all replicas (identity without a strategy)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


class Seq2SeqTrainer(keras.Model):
    """Trains a seq2seq student with label-smoothed cross-entropy.

    Batches are global: each replica's summed token loss is divided by the number of
    target tokens in the *global* batch, so the all-reduced gradient equals the one-device
    gradient of the same batch. Losses are reported through ``keras.metrics.Mean`` trackers
    (a raw tensor returned from ``train_step`` reads as 0 under a strategy).

    Subclasses (the distillers) override :meth:`token_losses` to add terms.

    Args:
        student: the seq2seq model (``call({"source_ids", "decoder_ids"}) -> logits``).
        label_smoothing: epsilon of the label-smoothed cross-entropy.
        pad_id: target padding id.
    """

    # the per-token terms reported (as token-weighted means) next to the optimised "loss"
    loss_terms = ("loss", "nll")

    def __init__(self, student, label_smoothing=0.1, pad_id=0, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.label_smoothing = label_smoothing
        self.pad_id = pad_id
        self.term_trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_terms}
        self.token_counter = keras.metrics.Sum(name="tokens")

    @property
    def metrics(self):
        return [*self.term_trackers.values(), self.token_counter]

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def token_losses(self, inputs, target_ids, logits):
        """Per-token ``{"loss": ..., "nll": ...}``; ``loss`` is what is optimised."""
        loss, nll = label_smoothed_cross_entropy(target_ids, logits, self.label_smoothing)
        return {"loss": loss, "nll": nll}

    def _loss_sums(self, data, training):
        inputs, target_ids = data
        logits = self.student(inputs, training=training)
        mask = ops.cast(ops.not_equal(target_ids, self.pad_id), "float32")
        local_tokens = ops.sum(mask)
        global_tokens = ops.maximum(global_sum(local_tokens), 1.0)
        terms = self.token_losses(inputs, target_ids, logits)
        sums = {name: ops.sum(value * mask) for name, value in terms.items()}
        return sums, local_tokens, global_tokens

    def _track(self, sums, local_tokens):
        # per-replica means weighted by token counts aggregate to the global token mean
        weight = ops.maximum(local_tokens, 1e-9)
        for name, value in sums.items():
            if name in self.term_trackers:
                self.term_trackers[name].update_state(value / weight, sample_weight=local_tokens)
        self.token_counter.update_state(local_tokens)
        # report only the terms this batch has (validation carries no soft targets)
        reported = [name for name in self.term_trackers if name in sums]
        return {**{name: self.term_trackers[name].result() for name in reported},
                "tokens": self.token_counter.result()}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            sums, local_tokens, global_tokens = self._loss_sums(data, training=True)
            loss = sums["loss"] / global_tokens
        variables = self.student.trainable_variables
        gradients = tape.gradient(loss, variables)
        gradients = self.process_gradients(gradients, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._track(sums, local_tokens)

    def process_gradients(self, gradients, variables):
        """Hook for gradient surgery (gating in the mask-task distiller); identity here."""
        return gradients

    def test_step(self, data):
        sums, local_tokens, _ = self._loss_sums(data, training=False)
        return self._track(sums, local_tokens)
