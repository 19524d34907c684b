"""Masked-LM input corruption, in-graph, as BERT and SpanBERT pre-train.

Both maskers take a padded batch of token ids and a boolean ``candidates`` mask (the
positions that may be masked: never ``[CLS]``, ``[SEP]`` or padding) and return
``(masked_token_ids, mask_positions, mask_ids, mask_weights)``: the corrupted ids, and
``[B, P]`` positions, original ids and weights (1 for a prediction, 0 for padding) of the
chosen positions, ``P`` sized to the busiest row (at most ``max_predictions``), the form
keras-hub's ``MaskedLMHead`` reads.

- :func:`token_mask` (BERT): each candidate is chosen with probability ``rate`` (at least one
  per row); a chosen token becomes ``[MASK]`` (80%), a random token (10%) or stays (10%).
- :func:`uniform_count_mask` (Mask-Predict's conditional MLM, Ghazvininejad et al. 2019; AB-Net
  eq. 3): the number of masked tokens of a row is drawn uniformly from ``1..n`` (``n`` its
  candidates), the positions uniformly among them; all become ``[MASK]``. It returns the
  masked ids and a boolean ``[B, L]`` mask (the loss reads every position).
- :func:`segment_mask` (MASS, Song et al. 2019): one contiguous segment of about ``rate`` (half)
  of each sentence is corrupted 80/10/10 in the encoder's input and predicted by the decoder,
  which reads the segment shifted right by one and ``[MASK]`` everywhere else.
- :func:`span_mask` (SpanBERT, Joshi et al. 2020): contiguous spans with geometric lengths
  (``p = 0.2``, truncated at 10 and renormalised, mean 3.8) at uniform starts until ``rate`` of the row's
  candidates are chosen; the 80/10/10 decision is taken per span. Spans are counted in
  tokens (SpanBERT counts whole words).

``seed`` is a ``[2]`` int tensor for stateless (reproducible) draws; ``None`` uses TensorFlow's
stateful generator. In a tf.data pipeline draw one seed per batch from
``tf.data.Dataset.random`` so the masks differ every epoch yet replay from the run's seed.
"""

import tensorflow as tf

SPAN_P = 0.2
SPAN_MAX = 10


def _uniform(shape, seed, salt, minval=0.0, maxval=1.0, dtype=tf.float32):
    if seed is None:
        return tf.random.uniform(shape, minval, maxval, dtype=dtype)
    seed = tf.cast(seed, tf.int64)
    return tf.random.stateless_uniform(
        shape, seed=tf.stack([seed[0], seed[1] + salt]), minval=minval, maxval=maxval, dtype=dtype
    )


def chosen_predictions(token_ids, chosen, max_predictions=None):
    """The ``chosen`` positions of each row, in order, padded to the busiest row:
    ``(positions, ids there, weights)``, each ``[B, P]``."""
    shape = tf.shape(token_ids)
    length = tf.cast(shape[1], tf.float32)
    order_key = tf.where(chosen, tf.cast(tf.range(shape[1]), tf.float32), length + 1.0)
    most = tf.reduce_max(tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1))
    if max_predictions is not None:
        most = tf.minimum(most, max_predictions)
    _, positions = tf.math.top_k(-order_key, k=tf.minimum(tf.maximum(most, 1), shape[1]))
    positions = tf.sort(positions, axis=1)
    weights = tf.cast(tf.gather(chosen, positions, batch_dims=1), tf.float32)
    positions = tf.where(weights > 0, positions, 0)
    return positions, tf.gather(token_ids, positions, batch_dims=1), weights


def _replacement(original, action, random_tokens, mask_id, replace_random, keep):
    """BERT's 80/10/10 choice per uniform ``action``: ``mask_id``, a random token or ``original``."""
    dtype = original.dtype
    return tf.where(
        action < 1.0 - replace_random - keep,
        tf.cast(mask_id, dtype),
        tf.where(action < 1.0 - keep, tf.cast(random_tokens, dtype), original),
    )


def _corrupt(token_ids, positions, mask_ids, weights, action, random_tokens, mask_id, replace_random, keep):
    """Write ``[MASK]`` / a random token / the original at the predicted positions."""
    shape = tf.shape(token_ids)
    new_values = _replacement(mask_ids, action, random_tokens, mask_id, replace_random, keep)
    batch_index = tf.repeat(tf.range(shape[0])[:, None], tf.shape(positions)[1], axis=1)
    updates_at = tf.boolean_mask(tf.stack([batch_index, positions], -1), weights > 0)
    return tf.tensor_scatter_nd_update(token_ids, updates_at, tf.boolean_mask(new_values, weights > 0))


def token_mask(
    token_ids, candidates, rate, mask_id, vocab_size, seed=None, max_predictions=None, replace_random=0.1, keep=0.1
):
    """BERT masking: about ``rate`` of the ``candidates`` (at least one per row that has any).

    Args:
        token_ids: int ``[B, L]``.
        candidates: bool ``[B, L]``, where masking is allowed.
        rate: probability of choosing each candidate.
        mask_id: the ``[MASK]`` id; vocab_size: random replacements are drawn from ``[0, vocab_size)``.
        seed: ``[2]`` int tensor or ``None`` (see the module docstring).
        max_predictions: cap on the predictions per row (``None``: the busiest row's count).
        replace_random, keep: shares of chosen tokens replaced by a random token / kept.
    """
    token_ids = tf.convert_to_tensor(token_ids)
    candidates = tf.cast(candidates, tf.bool)
    shape = tf.shape(token_ids)
    uniform = _uniform(shape, seed, 0)
    scores = tf.where(candidates, uniform, 2.0)
    chosen = candidates & (scores < rate)
    first = tf.one_hot(tf.argmin(scores, axis=1), shape[1], on_value=True, off_value=False)
    chosen |= first & candidates
    positions, mask_ids, weights = chosen_predictions(token_ids, chosen, max_predictions)
    action = _uniform(tf.shape(positions), seed, 1)
    random_tokens = _uniform(tf.shape(positions), seed, 2, 0, vocab_size, tf.int32)
    masked = _corrupt(token_ids, positions, mask_ids, weights, action, random_tokens, mask_id, replace_random, keep)
    return masked, positions, mask_ids, weights


def uniform_count_mask(token_ids, candidates, mask_id, seed=None):
    """``(masked_token_ids, masked)``: per row, ``k ~ U{1..n}`` of its ``n`` candidate
    positions, chosen uniformly without replacement, replaced by ``mask_id``. Rows without
    candidates are unchanged."""
    shape = tf.shape(token_ids)
    candidates = tf.cast(candidates, tf.bool)
    n = tf.reduce_sum(tf.cast(candidates, tf.int32), axis=1)
    # k = floor(u * n) + 1 is uniform on 1..n
    u = _uniform([shape[0]], seed, 0)
    k = tf.minimum(tf.cast(tf.floor(u * tf.cast(n, tf.float32)), tf.int32) + 1, n)
    # a uniform random order of the candidates: rank of each position by a uniform key
    keys = tf.where(candidates, _uniform(shape, seed, 1), 2.0)
    rank = tf.argsort(tf.argsort(keys, axis=1, stable=True), axis=1, stable=True)
    masked = candidates & (rank < k[:, None])
    return tf.where(masked, tf.cast(mask_id, token_ids.dtype), token_ids), masked


def span_lengths(uniform, p=SPAN_P, max_length=SPAN_MAX):
    """Span lengths from uniforms in ``[0, 1)``: ``P(l) ~ p (1 - p)^(l - 1)`` for
    ``1 <= l <= max_length``, renormalised (SpanBERT's distribution; mean 3.8 for the defaults),
    by inverting its CDF."""
    mass = 1.0 - (1.0 - p) ** max_length
    lengths = tf.math.ceil(tf.math.log1p(-uniform * mass) / tf.math.log(1.0 - p))
    return tf.cast(tf.clip_by_value(lengths, 1.0, float(max_length)), tf.int32)


def span_mask(
    token_ids,
    candidates,
    rate,
    mask_id,
    vocab_size,
    seed=None,
    max_predictions=None,
    replace_random=0.1,
    keep=0.1,
    p=SPAN_P,
    max_span=SPAN_MAX,
    max_spans=None,
):
    """SpanBERT masking: spans are drawn one after another (a geometric length, a uniform start
    among the candidates) until the row's budget of ``max(1, round(rate * candidates))``
    tokens is met (the last span is cut there) or
    ``max_spans`` draws (default: the longest row's length + 8) were made. Spans stop at the
    first non-candidate position; overlapping spans merge. Arguments as :func:`token_mask`.
    """
    token_ids = tf.convert_to_tensor(token_ids)
    candidates = tf.cast(candidates, tf.bool)
    shape = tf.shape(token_ids)
    batch, length = shape[0], shape[1]
    count = tf.reduce_sum(tf.cast(candidates, tf.int32), axis=1)
    budget = tf.where(count > 0, tf.maximum(1, tf.cast(tf.round(rate * tf.cast(count, tf.float32)), tf.int32)), 0)
    draws = length + 8 if max_spans is None else max_spans
    starts_u = _uniform([draws, batch], seed, 3)
    lengths = span_lengths(_uniform([draws, batch], seed, 4), p, max_span)
    # the k-th candidate of each row, to place starts uniformly among candidates
    candidate_rank = tf.cumsum(tf.cast(candidates, tf.int32), axis=1) - 1
    positions_range = tf.range(length)[None, :]

    def body(i, span_id, chosen_count):
        start_rank = tf.cast(tf.floor(starts_u[i] * tf.cast(count, tf.float32)), tf.int32)
        start_rank = tf.minimum(start_rank, tf.maximum(count - 1, 0))
        is_start = candidates & tf.equal(candidate_rank, start_rank[:, None])
        start = tf.argmax(tf.cast(is_start, tf.int32), axis=1, output_type=tf.int32)
        in_range = (positions_range >= start[:, None]) & (positions_range < (start + lengths[i])[:, None])
        # a span stops at the first position that is not a candidate
        outside = tf.cumsum(tf.cast(in_range & ~candidates, tf.int32), axis=1) > 0
        span = in_range & ~outside
        new = span & (span_id < 0)
        # the last span is cut at the budget (SpanBERT adds a span token by token until it is met)
        new &= tf.cumsum(tf.cast(new, tf.int32), axis=1) <= (budget - chosen_count)[:, None]
        span_id = tf.where(new, i, span_id)
        chosen_count += tf.reduce_sum(tf.cast(new, tf.int32), axis=1)
        return i + 1, span_id, chosen_count

    def more(i, span_id, chosen_count):
        return (i < draws) & tf.reduce_any(chosen_count < budget)

    _, span_id, _ = tf.while_loop(
        more, body, (tf.constant(0), tf.fill([batch, length], -1), tf.zeros([batch], tf.int32))
    )
    chosen = span_id >= 0
    positions, mask_ids, weights = chosen_predictions(token_ids, chosen, max_predictions)
    # one 80/10/10 decision per span
    span_action = _uniform([batch, draws], seed, 5)
    action = tf.gather(span_action, tf.maximum(tf.gather(span_id, positions, batch_dims=1), 0), batch_dims=1)
    random_tokens = _uniform(tf.shape(positions), seed, 6, 0, vocab_size, tf.int32)
    masked = _corrupt(token_ids, positions, mask_ids, weights, action, random_tokens, mask_id, replace_random, keep)
    return masked, positions, mask_ids, weights


def segment_mask(
    token_ids, lengths, rate, mask_id, vocab_size, bos_id, pad_id, seed=None, replace_random=0.1, keep=0.1
):
    """MASS masking (Song et al. 2019, section 2.2; LightPAFF appendix eq. 4) of a padded batch
    of sentences ``token_ids`` ``[B, L]`` whose first ``lengths`` ``[B]`` positions are tokens.

    Per row of length ``n > 0``: a segment ``s .. s + k - 1`` of ``k = max(1, round(rate * n))``
    tokens (half for ``rate = 0.5``) at a uniform start ``s`` in ``0 .. n - k``.

    Returns ``(encoder_ids, decoder_ids, target_ids)``, each ``[B, L]``:

    - ``encoder_ids``: the sentence with each segment token replaced by ``mask_id`` (80%), a
      random token from ``[0, vocab_size)`` (10%) or kept (10%);
    - ``decoder_ids``: inside the segment the sentence shifted right by one (position ``s``
      reads ``x[s - 1]``, or ``bos_id`` when ``s = 0``, and position ``m`` reads ``x[m - 1]``),
      so the decoder predicts ``x[m]`` from the segment tokens before it; ``mask_id`` at the
      other positions of the sentence (the tokens the encoder sees are hidden from the decoder);
      ``pad_id`` past the end;
    - ``target_ids``: the segment's tokens at their positions, ``pad_id`` elsewhere (no loss).
    """
    token_ids = tf.convert_to_tensor(token_ids)
    dtype = token_ids.dtype
    shape = tf.shape(token_ids)
    lengths = tf.cast(lengths, tf.int32)
    n = tf.cast(lengths, tf.float32)
    k = tf.where(lengths > 0, tf.maximum(1, tf.cast(tf.round(rate * n), tf.int32)), 0)
    start = tf.cast(tf.floor(_uniform([shape[0]], seed, 7) * tf.cast(lengths - k + 1, tf.float32)), tf.int32)
    start = tf.minimum(start, tf.maximum(lengths - k, 0))
    positions = tf.range(shape[1])[None, :]
    in_sentence = positions < lengths[:, None]
    segment = (positions >= start[:, None]) & (positions < (start + k)[:, None])
    corrupted = _replacement(
        token_ids,
        _uniform(shape, seed, 8),
        _uniform(shape, seed, 9, 0, vocab_size, tf.int32),
        mask_id,
        replace_random,
        keep,
    )
    encoder_ids = tf.where(segment, corrupted, token_ids)
    shifted = tf.concat([tf.fill([shape[0], 1], tf.cast(bos_id, dtype)), token_ids[:, :-1]], axis=1)
    pad = tf.cast(pad_id, dtype)
    decoder_ids = tf.where(segment, shifted, tf.where(in_sentence, tf.cast(mask_id, dtype), pad))
    target_ids = tf.where(segment, token_ids, pad)
    return encoder_ids, decoder_ids, target_ids


MASKERS = {"token": token_mask, "span": span_mask}


def special_free(token_ids, special_ids):
    """Positions that hold none of ``special_ids`` (the masking candidates)."""
    token_ids = tf.convert_to_tensor(token_ids)
    allowed = tf.ones_like(token_ids, tf.bool)
    for special in special_ids:
        allowed &= tf.not_equal(token_ids, special)
    return allowed


__all__ = [
    "MASKERS",
    "chosen_predictions",
    "segment_mask",
    "span_lengths",
    "span_mask",
    "special_free",
    "token_mask",
    "uniform_count_mask",
]


def example_masking(source, example_id, seed, mask_id, vocab_size, masking, rate):
    """The fixed masking of one example (``source``: its ``[L]`` token ids, every one a
    candidate), drawn statelessly from ``(seed, example_id)``: ``(masked [L], chosen [L]
    bool)``, the same wherever it is computed (a teacher cache's writer and the training
    pipeline that reads it)."""
    source = tf.cast(source, tf.int32)[None]
    masked, positions, _, weights = MASKERS[masking](
        source,
        tf.ones_like(source, tf.bool),
        rate,
        mask_id,
        vocab_size,
        seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(example_id, tf.int64)]),
    )
    chosen = tf.scatter_nd(positions[0, :, None], tf.cast(weights[0] > 0, tf.int32), tf.shape(source[0]))
    return masked[0], chosen > 0
