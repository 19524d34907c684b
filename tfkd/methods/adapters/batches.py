"""Conditional-MLM training columns for a parallel (Mask-Predict) student, drawn in the
tf.data pipeline with one stateless seed per batch (``tf.data.Dataset.random(train.seed)``):
new masks every epoch, replayed exactly from the seed."""

import tensorflow as tf

from tfkd import data as data_lib
from tfkd.masking import uniform_count_mask

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
