"""Conditional masked-LM training of a parallel (Mask-Predict) student (Ghazvininejad et al.
2019; abnet.txt eq. 3 and section 3.3): its training columns, drawn in the tf.data pipeline
with one stateless seed per batch (``tf.data.Dataset.random(train.seed)``: new masks every
epoch, replayed exactly from the seed), and its ``train_step`` (:class:`CMLMTrainer`), which
the ``conditional_mlm`` and ``adapters`` methods train with."""

import keras
import tensorflow as tf
from keras import ops

from tfkd import data as data_lib
from tfkd.masking import uniform_count_mask
from tfkd.training.losses import label_smoothed_cross_entropy
from tfkd.training.trainer import LossTerm, Trainer

LENGTH_NORMALISERS = ("sentences", "masked_tokens")

# validation batches are masked by the trainer itself, always with this seed
VALIDATION_SEED = (2020, 9)


def cmlm_columns(target_ids, seed, pad_id, eos_id, mask_id):
    """From the task's targets ``y [SEP]`` (padded): ``{"target_tokens"}`` (``y``, padded),
    ``{"masked_target_ids"}`` (``y`` with ``k ~ U{1..|y|}`` tokens replaced by ``[MASK]``),
    ``{"target_mask"}`` (float, 1 where masked) and ``{"target_length"}`` (``|y|``)."""
    tokens = tf.where(tf.equal(target_ids, eos_id), tf.cast(pad_id, target_ids.dtype), target_ids)
    real = tf.not_equal(tokens, pad_id)
    masked_ids, masked = uniform_count_mask(tokens, real, mask_id, seed=seed)
    return {
        "target_tokens": tokens,
        "masked_target_ids": masked_ids,
        "target_mask": tf.cast(masked, tf.float32),
        "target_length": tf.reduce_sum(tf.cast(real, tf.int32), axis=1),
    }


def with_cmlm_targets(dataset, seed, target_tokenizer):
    """``dataset`` of ``(inputs, targets)`` with :func:`cmlm_columns` added to ``inputs``."""
    special = data_lib.SpecialIds.of(target_tokenizer)
    mask_id = target_tokenizer.token_to_id(data_lib.MASK)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    def add(batch, batch_seed):
        inputs, targets = batch
        return {**inputs, **cmlm_columns(targets, batch_seed, special.pad, special.eos, mask_id)}, targets

    return (
        tf.data.Dataset.zip((dataset, seeds)).map(add, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    )


class CMLMTrainer(Trainer):
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

    What trains is ``trainer.trainable_variables``: the student's weights that are not frozen
    (``trainable = False``: an AB-Net's BERTs).

    Training batches carry their masks (:func:`with_cmlm_targets`);
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
