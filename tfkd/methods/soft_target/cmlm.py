"""Conditional masked language modelling (cmlm_kd.txt, section 3.2).

The teacher reads ``[CLS] X [SEP] Y [SEP]`` (segment 0 for ``[CLS] X [SEP]``, 1 for
``Y [SEP]``) and learns to predict masked target tokens; the source is never masked.
"""

import keras
import keras_hub
import tensorflow as tf


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


def cmlm_mask(token_ids, segment_ids, padding_mask, rate, mask_id, vocab_size, max_predictions=None,
              seed=None, replace_random=0.1, keep=0.1):
    """Mask about ``rate`` of the target-side positions (at least one per sequence).

    Chosen positions become ``[MASK]`` (``1 - replace_random - keep`` of them), a random token,
    or stay unchanged, as in BERT. Source positions are never chosen.

    ``max_predictions`` caps the predictions per sequence; ``None`` sizes them to the batch's
    row with the most chosen positions, so the MLM head scores no more padding than it must.

    Returns:
        ``(masked_token_ids, mask_positions, mask_ids, mask_weights)``; the last three are
        ``[B, P]`` (``P`` at most ``max_predictions``), weights 1 for real predictions and 0 for
        padding.
    """
    token_ids = tf.convert_to_tensor(token_ids)
    shape = tf.shape(token_ids)
    candidates = target_positions(segment_ids, padding_mask)
    uniform = tf.random.stateless_uniform(shape, seed=seed) if seed is not None else tf.random.uniform(shape)
    scores = tf.where(candidates, uniform, 2.0)
    chosen = candidates & (scores < rate)
    # at least one prediction per sequence that has a target
    first = tf.one_hot(tf.argmin(scores, axis=1), shape[1], on_value=True, off_value=False)
    chosen |= first & candidates
    # the chosen positions, in order, padded to max_predictions
    length = tf.cast(shape[1], tf.float32)
    order_key = tf.where(chosen, tf.cast(tf.range(shape[1]), tf.float32), length + 1.0)
    most = tf.reduce_max(tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1))
    if max_predictions is not None:
        most = tf.minimum(most, max_predictions)
    _, positions = tf.math.top_k(-order_key, k=tf.minimum(tf.maximum(most, 1), shape[1]))
    positions = tf.sort(positions, axis=1)
    weights = tf.cast(tf.gather(chosen, positions, batch_dims=1), tf.float32)
    positions = tf.where(weights > 0, positions, 0)
    mask_ids = tf.gather(token_ids, positions, batch_dims=1)

    action = tf.random.stateless_uniform(tf.shape(positions), seed=tf.reverse(seed, [0])) \
        if seed is not None else tf.random.uniform(tf.shape(positions))
    random_tokens = tf.random.stateless_uniform(tf.shape(positions), seed=seed + 1, minval=0,
                                                maxval=vocab_size, dtype=tf.int32) \
        if seed is not None else tf.random.uniform(tf.shape(positions), 0, vocab_size, dtype=tf.int32)
    new_values = tf.where(action < 1.0 - replace_random - keep, mask_id,
                          tf.where(action < 1.0 - keep, random_tokens, mask_ids))
    batch_index = tf.repeat(tf.range(shape[0])[:, None], tf.shape(positions)[1], axis=1)
    updates_at = tf.boolean_mask(tf.stack([batch_index, positions], -1), weights > 0)
    masked = tf.tensor_scatter_nd_update(token_ids, updates_at, tf.boolean_mask(new_values, weights > 0))
    return masked, positions, mask_ids, weights


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
    from tfkd.models.teachers import load_masked_lm_teacher

    masked_lm = load_masked_lm_teacher(checkpoint)
    return LeftToRightBertLM(masked_lm) if direction == "left_to_right" else masked_lm


class LeftToRightBertLM(keras.Model):
    """The paper's BERT_l2r ablation (cmlm_kd 4.4): BERT's layers and MLM head, with a
    prefix-LM attention mask so each target token is predicted, from the position before it,
    out of the source and the earlier target tokens only.

    Inputs are those of ``BertMaskedLM``; ``mask_positions`` name the positions whose hidden
    states make the predictions (see :func:`tfkd.models.cmlm.left_to_right_targets`).
    """

    def __init__(self, masked_lm, **kwargs):
        super().__init__(**kwargs)
        self.masked_lm = masked_lm

    def call(self, inputs, training=False):
        backbone = self.masked_lm.backbone
        tokens = backbone.token_embedding(inputs["token_ids"])
        x = backbone.embeddings_add(
            (tokens, backbone.position_embedding(tokens), backbone.segment_embedding(inputs["segment_ids"]))
        )
        x = backbone.embeddings_dropout(backbone.embeddings_layer_norm(x), training=training)
        mask = prefix_lm_attention_mask(inputs["segment_ids"], inputs["padding_mask"])
        for layer in backbone.transformer_layers:
            x = layer(x, padding_mask=inputs["padding_mask"], attention_mask=mask, training=training)
        return self.masked_lm.masked_lm_head(x, inputs["mask_positions"])
