"""The masked copy X' of each training batch's source (masktask_kd 3.1), drawn in the tf.data
pipeline: one stateless seed per batch from ``tf.data.Dataset.random(train.seed)``, so masks
differ every epoch (the seed stream does not restart with the data) and replay from the seed."""

import tensorflow as tf

from tfkd import data as data_lib
from tfkd.masking import MASKERS


def mask_source(source_ids, seed, pad_id, mask_id, vocab_size, masking, rate):
    """``{"masked_source_ids", "mask_positions", "mask_ids", "mask_weights"}`` for a padded
    ``[B, L]`` batch of source ids (no ``[CLS]``/``[SEP]`` here; padding is never masked)."""
    masked, positions, labels, weights = MASKERS[masking](
        source_ids, tf.not_equal(source_ids, pad_id), rate, mask_id, vocab_size, seed=seed
    )
    return {"masked_source_ids": masked, "mask_positions": positions, "mask_ids": labels, "mask_weights": weights}


def with_masked_source(dataset, spec, source_tokenizer):
    """``dataset`` of ``(inputs, targets)`` with the masked-source columns added to ``inputs``."""
    pad_id = source_tokenizer.token_to_id(data_lib.PAD)
    mask_id = source_tokenizer.token_to_id(data_lib.MASK)
    vocab_size = source_tokenizer.vocabulary_size()
    section = spec.distill
    seeds = tf.data.Dataset.random(seed=spec.train.seed).batch(2)

    def add(batch, seed):
        inputs, targets = batch
        columns = mask_source(
            inputs["source_ids"], seed, pad_id, mask_id, vocab_size, section.masking, section.mask_rate
        )
        return {**inputs, **columns}, targets

    return (
        tf.data.Dataset.zip((dataset, seeds)).map(add, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    )
