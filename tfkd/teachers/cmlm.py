"""Conditional masked language modelling (cmlm_kd.txt, section 3.2).

The teacher reads ``[CLS] X [SEP] Y [SEP]`` (segment 0 for ``[CLS] X [SEP]``, 1 for
``Y [SEP]``) and learns to predict masked target tokens; the source is never masked.

Its soft targets (:func:`soft_targets`, written to the top-K cache,
:mod:`tfkd.teachers.topk_cache`): the target positions (``Y`` and its closing ``[SEP]``,
which is the student's EOS) are split into ``G = ceil(1 / mask_rate)`` disjoint groups
(position ``i`` in group ``i mod G``) and one forward pass per group masks that group, so
every position is predicted while masked and with the rest as context. The top K of
``softmax(logits / T)`` are kept and renormalised.
"""

import math

import keras
import keras_hub
import tensorflow as tf

from tfkd.teachers.topk_cache import top_k_distribution


def pack_pairs(source_ids, target_ids, sequence_length, special_ids):
    """``[CLS] X [SEP] Y [SEP]`` token ids, segment ids and padding mask (keras-hub packer),
    padded to the batch's longest pair and at most ``sequence_length``.

    ``source_ids``/``target_ids`` are ragged ``[B, None]`` teacher-vocabulary ids. When a pair
    does not fit, only the source is shortened: every target position must stay predictable.
    """
    target_lengths = target_ids.row_lengths()
    room = tf.maximum(tf.cast(sequence_length, target_lengths.dtype) - 3 - target_lengths, 0)
    keep = tf.ragged.range(source_ids.row_lengths()) < tf.expand_dims(room, 1)
    source_ids = tf.ragged.boolean_mask(source_ids, keep)
    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=sequence_length,
        start_value=special_ids.bos,
        end_value=special_ids.eos,
        pad_value=special_ids.pad,
        truncate="waterfall",
    )
    token_ids, segment_ids = packer((source_ids, target_ids))
    # keep only up to the longest pair of this batch, not the cap
    longest = tf.cast(tf.reduce_max(source_ids.row_lengths() + target_lengths) + 3, tf.int32)
    token_ids, segment_ids = token_ids[:, :longest], segment_ids[:, :longest]
    return token_ids, segment_ids, tf.not_equal(token_ids, special_ids.pad)


def target_positions(segment_ids, padding_mask):
    """Where the target side (``Y`` and its closing ``[SEP]``) is: segment 1, not padding."""
    return tf.equal(segment_ids, 1) & tf.cast(padding_mask, tf.bool)


def cmlm_mask(
    token_ids,
    segment_ids,
    padding_mask,
    rate,
    mask_id,
    vocab_size,
    max_predictions=None,
    seed=None,
    replace_random=0.1,
    keep=0.1,
):
    """Mask about ``rate`` of the target-side positions (at least one per sequence), as BERT
    does (:func:`tfkd.masking.token_mask`); source positions are never chosen.

    Returns:
        ``(masked_token_ids, mask_positions, mask_ids, mask_weights)``; the last three are
        ``[B, P]`` (``P`` at most ``max_predictions``), weights 1 for real predictions and 0 for
        padding.
    """
    from tfkd.masking import token_mask

    return token_mask(
        token_ids,
        target_positions(segment_ids, padding_mask),
        rate,
        mask_id,
        vocab_size,
        seed=seed,
        max_predictions=max_predictions,
        replace_random=replace_random,
        keep=keep,
    )


def prefix_lm_attention_mask(segment_ids, padding_mask):
    """``[B, L, L]`` mask of the left-to-right teacher (the paper's BERT_l2r): source
    positions see the whole source, a target position sees the source and the target up to
    itself; padding is never seen."""
    padding = tf.cast(padding_mask, tf.bool)
    length = tf.shape(segment_ids)[1]
    is_source = tf.equal(segment_ids, 0) & padding
    causal = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
    is_target_query = tf.equal(segment_ids, 1)[:, :, None]
    allowed = is_source[:, None, :] | (is_target_query & causal[None] & padding[:, None, :])
    return allowed & padding[:, :, None]  # padding queries see nothing


def left_to_right_targets(token_ids, segment_ids, padding_mask):
    """Every target-side token (``Y`` and its ``[SEP]``) as a prediction from the position
    before it: ``(positions, labels, weights)``, each ``[B, P]`` with ``P`` the longest target
    of the batch, in target order."""
    is_target = target_positions(segment_ids, padding_mask)
    length = tf.shape(token_ids)[1]
    count = tf.reduce_sum(tf.cast(is_target, tf.int32), axis=1)
    key = tf.where(is_target, tf.range(length)[None, :], length + tf.range(length)[None, :])
    positions = tf.sort(key, axis=1)[:, : tf.reduce_max(count)]
    weights = tf.cast(positions < length, tf.float32)
    positions = tf.where(weights > 0, positions, 1)
    labels = tf.gather(token_ids, positions, batch_dims=1)
    return positions - 1, labels, weights


def load_cmlm_teacher(checkpoint, direction="bidirectional"):
    """The teacher to fine-tune: keras-hub's ``BertMaskedLM``, or for ``direction:
    left_to_right`` the same model read as a :class:`LeftToRightBertLM`."""
    from tfkd.teachers.checkpoints import load_masked_lm_teacher

    masked_lm = load_masked_lm_teacher(checkpoint)
    return LeftToRightBertLM(masked_lm) if direction == "left_to_right" else masked_lm


class LeftToRightBertLM(keras.Model):
    """The paper's BERT_l2r ablation (cmlm_kd 4.4): BERT's layers and MLM head, with a
    prefix-LM attention mask so each target token is predicted, from the position before it,
    out of the source and the earlier target tokens only.

    Inputs are those of ``BertMaskedLM``; ``mask_positions`` name the positions whose hidden
    states make the predictions (see :func:`left_to_right_targets`).
    """

    def __init__(self, masked_lm, **kwargs):
        super().__init__(**kwargs)
        self.masked_lm = masked_lm

    def call(self, inputs, training=False):
        from tfkd.teachers.checkpoints import bert_layer_outputs

        mask = prefix_lm_attention_mask(inputs["segment_ids"], inputs["padding_mask"])
        x = bert_layer_outputs(self.masked_lm.backbone, inputs, attention_mask=mask, training=training)[-1]
        return self.masked_lm.masked_lm_head(x, inputs["mask_positions"])


def soft_targets(teacher, source_ids, target_ids, special_ids, mask_id, top_k, temperature, mask_rate, max_length):
    """Top-K teacher distributions for every target position, each predicted while masked.

    Args:
        teacher: a keras-hub ``BertMaskedLM``.
        source_ids, target_ids: ragged ``[B, None]`` teacher-vocabulary ids.

    Returns:
        ``(ids [B, T, K] int32, probs [B, T, K] float32, tail [B, T] float32)`` with ``T`` the
        longest target + 1 (the closing ``[SEP]``), ``tail`` the mass outside the K; rows
        beyond a target's length are zero.
    """
    token_ids, segment_ids, padding_mask = pack_pairs(source_ids, target_ids, max_length, special_ids)
    is_target = target_positions(segment_ids, padding_mask)
    batch, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    # index of each position within its target side (-1 outside)
    offset = tf.cumsum(tf.cast(is_target, tf.int32), axis=1) - 1
    offset = tf.where(is_target, offset, -1)
    width = tf.cast(tf.reduce_max(target_ids.row_lengths()), tf.int32) + 1
    groups = math.ceil(1.0 / mask_rate)
    ids = tf.zeros([batch, width, top_k], tf.int32)
    probs = tf.zeros([batch, width, top_k], tf.float32)
    tail = tf.zeros([batch, width], tf.float32)
    for group in range(groups):
        chosen = is_target & tf.equal(tf.math.floormod(offset, groups), group)
        per_row = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1)), 1)
        # the chosen positions of each row first (in order), padded with position 0
        key = tf.where(chosen, tf.range(length)[None, :], length + tf.range(length)[None, :])
        positions = tf.sort(key, axis=1)[:, :per_row]
        valid = positions < length
        positions = tf.where(valid, positions, 0)
        masked = tf.where(chosen, mask_id, token_ids)
        logits = teacher(
            {
                "token_ids": masked,
                "segment_ids": segment_ids,
                "padding_mask": padding_mask,
                "mask_positions": positions,
            },
            training=False,
        )
        top_ids, top_probs, top_tail = top_k_distribution(logits, top_k, temperature, with_tail=True)
        where = tf.stack(
            [tf.repeat(tf.range(batch)[:, None], per_row, axis=1), tf.gather(offset, positions, batch_dims=1)], axis=-1
        )
        where = tf.boolean_mask(where, valid)
        ids = tf.tensor_scatter_nd_update(ids, where, tf.boolean_mask(top_ids, valid))
        probs = tf.tensor_scatter_nd_update(probs, where, tf.boolean_mask(top_probs, valid))
        tail = tf.tensor_scatter_nd_update(tail, where, tf.boolean_mask(top_tail, valid))
    return ids, probs, tail


def left_to_right_soft_targets(teacher, source_ids, target_ids, special_ids, top_k, temperature, max_length):
    """:func:`soft_targets` of a left-to-right teacher (BERT_l2r): one pass per batch, each
    target position predicted from the source and the target before it; ``(ids, probs,
    tail)`` as there."""
    token_ids, segment_ids, padding_mask = pack_pairs(source_ids, target_ids, max_length, special_ids)
    positions, _, weights = left_to_right_targets(token_ids, segment_ids, padding_mask)
    logits = teacher(
        {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask, "mask_positions": positions},
        training=False,
    )
    ids, probs, tail = top_k_distribution(logits, top_k, temperature, with_tail=True)
    keep = weights[:, :, None] > 0
    return tf.where(keep, ids, 0), tf.where(keep, probs, 0.0), tf.where(keep[..., 0], tail, 0.0)
