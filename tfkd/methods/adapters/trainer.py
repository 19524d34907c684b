"""The adapter-only conditional-MLM ``train_step`` of AB-Net (abnet.txt eq. 3 and 3.3).

What trains is ``trainer.trainable_variables``: the student's adapters, ``[LENGTH]`` predictor
and untied head parts; the student's BERTs are frozen (``trainable = False``) unless its
``adapters.train`` is ``all``, so the base :class:`~tfkd.training.Trainer` step never touches
them (and no optimizer slot is made for them).
"""

import keras
import tensorflow as tf
from keras import ops

from tfkd.methods.adapters.batches import VALIDATION_SEED, cmlm_columns
from tfkd.training.losses import label_smoothed_cross_entropy
from tfkd.training.trainer import LossTerm, Trainer

LENGTH_NORMALISERS = ("sentences", "masked_tokens")


class AdapterCMLMTrainer(Trainer):
    """Terms: ``cmlm``, label-smoothed cross-entropy over the masked target positions
    (normalised by their count); ``length``, cross-entropy of the target length predicted at
    the ``[LENGTH]`` position (per sentence); ``nll`` (reported), the unsmoothed NLL of the
    masked tokens.

    ``length_normaliser``: ``"sentences"`` divides the length term by the batch's sentences
    (its mean per sentence, weighed by the ``length`` loss weight); ``"masked_tokens"`` by the
    masked target tokens the ``cmlm`` term is divided by, so that the loss is ``(sum of the
    token terms + sum of the sentences' length terms) / masked tokens`` at weight 1: fairseq's
    Mask-Predict criterion (``label_smoothed_length_cross_entropy``), with which AB-Net's
    released code trains.

    Training batches carry their masks (:func:`tfkd.methods.adapters.batches.with_cmlm_targets`);
    validation batches (the task's plain ones) are masked here with a fixed seed, so every
    validation pass scores the same corruption.
    """

    def __init__(
        self,
        student,
        loss_weights,
        special_ids,
        mask_id,
        label_smoothing=0.1,
        length_normaliser="sentences",
        **kwargs,
    ):
        super().__init__(student, loss_weights, reported_terms=("nll",), **kwargs)
        if length_normaliser not in LENGTH_NORMALISERS:
            raise ValueError(
                f"length_normaliser {length_normaliser!r}: expected one of {', '.join(LENGTH_NORMALISERS)}"
            )
        self.special_ids = special_ids  # of the target tokenizer
        self.mask_id = mask_id
        self.label_smoothing = label_smoothing
        self.length_normaliser = length_normaliser

    def call(self, inputs, training=False):
        return self.student(
            {"source_ids": inputs["source_ids"], "decoder_ids": inputs.get("masked_target_ids", inputs["decoder_ids"])},
            training=training,
        )

    def compute_terms(self, data, training):
        inputs, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        if "masked_target_ids" not in inputs:
            inputs = {
                **inputs,
                **cmlm_columns(
                    targets,
                    tf.constant(VALIDATION_SEED, tf.int64),
                    self.special_ids.pad,
                    self.special_ids.eos,
                    self.mask_id,
                ),
            }
        outputs = self.student(
            {"source_ids": inputs["source_ids"], "decoder_ids": inputs["masked_target_ids"]}, training=training
        )
        mask = inputs["target_mask"]
        xe, nll = label_smoothed_cross_entropy(inputs["target_tokens"], outputs["logits"], self.label_smoothing)
        masked_tokens = ops.sum(mask)
        lengths = ops.minimum(inputs["target_length"], self.student.max_target_length)
        length_xe, _ = label_smoothed_cross_entropy(lengths[:, None], outputs["length_logits"][:, None, :], 0.0)
        sentences = ops.cast(ops.shape(lengths)[0], "float32")
        length_count = masked_tokens if self.length_normaliser == "masked_tokens" else sentences
        terms = {
            "cmlm": LossTerm(ops.sum(xe * mask), masked_tokens),
            "length": LossTerm(ops.sum(length_xe), length_count),
            "nll": LossTerm(ops.sum(nll * mask), masked_tokens),
        }
        target_tokens = ops.sum(ops.cast(ops.not_equal(inputs["target_tokens"], self.special_ids.pad), "float32"))
        return terms, target_tokens
