"""Mask-Predict: parallel decoding by iterative re-masking (Ghazvininejad et al., 2019).

The decoder used by AB-Net (``abnet.txt`` Sec. 3.3) and fairseq's ``cmlm`` models. A model
that drives it exposes

- ``encode(source_ids, training=False) -> (hidden, padding_mask)``;
- ``length_logits(hidden, padding_mask) -> [B, max_target_length + 1]``, logits over the target
  lengths ``0 .. max_target_length`` (length 0 is never chosen);
- ``decode(decoder_ids, hidden, padding_mask, training=False) -> logits [B, T, V]``, a
  bidirectional decoder reading target tokens with ``mask_id`` at masked positions and padding
  beyond each sequence's length; with a ``positions`` argument (``[B, P]`` indices into
  ``decoder_ids``) it may return the logits ``[B, P, V]`` at those positions only, which
  iterations after the first use (they re-predict only the re-masked tokens: the output
  layer's work falls with the masks);
- ``mask_id``, the target vocabulary's [MASK] token.

For every sentence the ``length_candidates`` most likely lengths (at most ``max_length``) are
decoded side by side, as rows of one batch. Iteration 1 predicts every position from an
all-[MASK] input; iteration ``t + 1`` (``t = 1 .. T - 1``) re-masks the
``num_masks(L, t, T) = floor(L * (T - t) / T)`` least probable tokens of a length-``L``
candidate and re-predicts only those, the others keeping their token and probability. A
candidate stops when nothing is left to mask or when an iteration leaves its tokens unchanged;
decoding stops when every candidate has stopped or after ``T`` iterations. Each sentence keeps
the candidate with the best average token log-probability.

Everything is TensorFlow ops (``tf.while_loop`` over iterations, batched over sentences and
candidates, dynamic shapes), so it runs under ``tf.function(autograph=False)`` and inside an
exported SavedModel. Iterations after the first decode only the candidates still running.
"""

import inspect

import tensorflow as tf

from tfkd import registry
from tfkd.decoding import NEG_INF, check_nbest


def num_masks(length, iteration, iterations):
    """Tokens re-masked before iteration ``iteration + 1``: ``floor(L * (T - t) / T)``.

    The linear decay of Mask-Predict, for ``t = iteration`` in ``1 .. T - 1`` and
    ``T = iterations``. Works on Python ints, NumPy arrays and integer tensors alike.
    """
    return (length * (iterations - iteration)) // iterations


def masks_per_iteration(length, iterations):
    """``[num_masks(length, t, iterations) for t in 1 .. iterations - 1]`` as Python ints."""
    return [num_masks(int(length), t, int(iterations)) for t in range(1, int(iterations))]


def candidate_lengths(length_logits, max_length, length_candidates):
    """The ``length_candidates`` most likely lengths in ``1 .. max_length``.

    Returns ``(lengths [B, k] int32, valid [B, k] bool)``, most likely first. When fewer than
    ``k`` lengths are allowed (``max_length < k``), the missing candidates are ``valid=False``
    (their length is set to 1 and they are never kept).
    """
    logits = tf.cast(length_logits, tf.float32)
    width = tf.shape(logits)[1]
    lengths = tf.range(width)
    allowed = (lengths >= 1) & (lengths <= max_length)
    logits = tf.where(allowed[tf.newaxis], logits, NEG_INF)
    # top_k needs at least k entries
    logits = tf.pad(logits, [[0, 0], [0, tf.maximum(length_candidates - width, 0)]], constant_values=NEG_INF)
    top, lengths = tf.math.top_k(logits, k=length_candidates)
    valid = top > NEG_INF / 2
    return tf.where(valid, lengths, 1), valid


def _banned_tokens(vocab, special_ids, mask_id):
    """``1.0`` at the tokens never emitted inside a sequence: pad, BOS, EOS and [MASK]."""
    banned = [special_ids.pad, special_ids.bos, special_ids.eos, mask_id]
    return tf.reduce_max(tf.one_hot(banned, vocab), axis=0)


def _takes_positions(model):
    """Whether ``model.decode`` computes logits at given positions only (``positions=``)."""
    try:
        return "positions" in inspect.signature(model.decode).parameters
    except (TypeError, ValueError):
        return False


def _predict(model, decoder_ids, hidden, padding_mask, special_ids, positions=None):
    """The decoder's most likely allowed token and its log-probability at every position, or
    at ``positions [N, P]`` only (``[N, P]`` results)."""
    if positions is None:
        logits = model.decode(decoder_ids, hidden, padding_mask, training=False)
    elif _takes_positions(model):  # the output layer projects only these positions
        logits = model.decode(decoder_ids, hidden, padding_mask, training=False, positions=positions)
    else:
        logits = tf.gather(model.decode(decoder_ids, hidden, padding_mask, training=False), positions, batch_dims=1)
    logits = tf.cast(logits, tf.float32)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    log_probs += _banned_tokens(tf.shape(log_probs)[-1], special_ids, model.mask_id) * NEG_INF
    token = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
    return token, tf.reduce_max(log_probs, axis=-1)


def _least_probable(log_probs, in_length, count):
    """``[N, W]`` bool: the ``count [N]`` lowest ``log_probs`` inside each row's length.

    Ties go to the earlier position.
    """
    key = tf.where(in_length, log_probs, float("inf"))
    order = tf.argsort(key, axis=1, stable=True)
    rank = tf.argsort(order, axis=1, stable=True)  # position -> its place in the order
    return rank < count[:, tf.newaxis]


def _mask_predict(model, source_ids, special_ids, max_length, length_candidates, iterations, record, nbest=None):
    k = int(length_candidates)
    pad, mask_id = special_ids.pad, model.mask_id
    hidden, padding_mask = model.encode(source_ids, training=False)
    batch = tf.shape(source_ids)[0]
    lengths, valid = candidate_lengths(model.length_logits(hidden, padding_mask), max_length, k)
    # one row per (sentence, candidate): [batch * k, ...]
    lengths, valid = tf.reshape(lengths, [-1]), tf.reshape(valid, [-1])
    hidden = tf.repeat(hidden, k, axis=0)
    padding_mask = tf.repeat(padding_mask, k, axis=0)
    width = tf.maximum(tf.reduce_max(lengths), 1)
    in_length = tf.range(width)[tf.newaxis] < lengths[:, tf.newaxis]

    # iteration 1: every position masked, every position predicted
    tokens, log_probs = _predict(model, tf.where(in_length, mask_id, pad), hidden, padding_mask, special_ids)
    tokens = tf.where(in_length, tokens, pad)
    log_probs = tf.where(in_length, log_probs, 0.0)
    history = _new_history(tokens, log_probs, in_length, valid) if record else ()

    def runnable(iteration, active):
        return active & (num_masks(lengths, iteration, iterations) > 0)

    def cond(iteration, tokens, log_probs, active, *history):
        return (iteration < iterations) & tf.reduce_any(runnable(iteration, active))

    def body(iteration, tokens, log_probs, active, *history):
        active = runnable(iteration, active)
        masked = _least_probable(log_probs, in_length, num_masks(lengths, iteration, iterations))
        masked &= active[:, tf.newaxis]
        new_tokens, new_log_probs = _repredict(
            model, tokens, log_probs, masked, active, hidden, padding_mask, special_ids
        )
        if record:
            history = _write(history, iteration, new_tokens, new_log_probs, masked, active)
        # a candidate whose tokens did not change has converged
        active &= tf.reduce_any(tf.not_equal(new_tokens, tokens), axis=1)
        return (iteration + 1, new_tokens, new_log_probs, active, *history)

    iteration, tokens, log_probs, _, *history = tf.while_loop(
        cond, body, (tf.constant(1), tokens, log_probs, valid, *history)
    )

    # each sentence's candidates ranked by their average log-probability
    average = tf.reduce_sum(log_probs, axis=1) / tf.cast(lengths, tf.float32)
    average = tf.reshape(tf.where(valid, average, NEG_INF), [batch, k])
    tokens, lengths, valid = (
        tf.reshape(tokens, [batch, k, width]),
        tf.reshape(lengths, [batch, k]),
        tf.reshape(valid, [batch, k]),
    )
    if nbest is not None:
        ranked_scores, ranked = tf.math.top_k(average, k=int(nbest))
        return tf.gather(tokens, ranked, batch_dims=1), ranked_scores
    best, best_tokens, scores = _best_candidate(tokens, average, lengths)
    if not record:
        return best_tokens, scores
    chosen = {"token_ids": best_tokens, "scores": scores, "best": best, "candidate_scores": average}
    return dict(chosen, lengths=lengths, valid=valid, iterations=iteration, **_per_candidate(history, batch, k))


def _best_candidate(tokens, average, lengths):
    """``(best [B], its tokens [B, W'], its score [B])``: each sentence's candidate with the best
    average log-probability, the tokens cut to the longest chosen length."""
    best = tf.argmax(average, axis=1, output_type=tf.int32)
    best_lengths = tf.gather(lengths, best, batch_dims=1)
    best_tokens = tf.gather(tokens, best, batch_dims=1)[:, : tf.maximum(tf.reduce_max(best_lengths), 0)]
    return best, best_tokens, tf.gather(average, best, batch_dims=1)


def _repredict(model, tokens, log_probs, masked, active, hidden, padding_mask, special_ids):
    """``(tokens, log_probs)`` with the ``masked [N, W]`` positions predicted again: only the
    ``active [N]`` rows are decoded, and only at their masked positions."""
    rows = tf.where(active)[:, 0]
    row_masked = tf.gather(masked, rows)
    # each row's masked positions first, in order; as many columns as the most masks
    order = tf.argsort(tf.cast(tf.logical_not(row_masked), tf.int32), axis=1, stable=True)
    positions = order[:, : tf.reduce_max(tf.reduce_sum(tf.cast(row_masked, tf.int32), axis=1))]
    picked_tokens, picked_log_probs = _predict(
        model,
        tf.gather(tf.where(masked, model.mask_id, tokens), rows),
        tf.gather(hidden, rows),
        tf.gather(padding_mask, rows),
        special_ids,
        positions,
    )
    # back to [row of the batch, position], where the position was masked
    picked = tf.gather(row_masked, positions, batch_dims=1)
    where = tf.stack([tf.broadcast_to(rows[:, tf.newaxis], tf.shape(positions)), tf.cast(positions, tf.int64)], axis=-1)
    where = tf.boolean_mask(where, picked)
    return (
        tf.tensor_scatter_nd_update(tokens, where, tf.boolean_mask(picked_tokens, picked)),
        tf.tensor_scatter_nd_update(log_probs, where, tf.boolean_mask(picked_log_probs, picked)),
    )


def _new_history(tokens, log_probs, masked, active):
    """The recorded iterations (``record``): tokens, log-probabilities, masks and running
    candidates, the first iteration's written."""
    history = tuple(
        tf.TensorArray(value.dtype, size=0, dynamic_size=True, element_shape=value.shape)
        for value in (tokens, log_probs, masked, active)
    )
    return _write(history, 0, tokens, log_probs, masked, active)


def _per_candidate(history, batch, k):
    """The recorded iterations as ``[iterations, batch, k, ...]`` arrays by name."""

    def stacked(array):
        values = array.stack()
        return tf.reshape(values, tf.concat([[-1, batch, k], tf.shape(values)[2:]], 0))

    return dict(zip(("tokens", "log_probs", "masked", "active"), (stacked(array) for array in history)))


def _write(history, index, *values):
    return tuple(array.write(index, value) for array, value in zip(history, values))


@registry.register("decoder", "mask_predict")
def mask_predict(model, source_ids, special_ids, max_length, length_candidates=4, iterations=10, nbest=None, **unused):
    """Mask-Predict decoding. Returns ``(token_ids [B, T], scores [B])``, or with ``nbest=N``
    (at most ``length_candidates``) the N best length candidates, ``([B, N, T], [B, N])``.

    Args:
        model: exposes ``encode``, ``length_logits``, ``decode`` and ``mask_id`` (module doc).
        source_ids: ``[B, S]`` source token ids.
        special_ids: the target tokenizer's :class:`tfkd.data.SpecialIds`.
        max_length: longest target length considered (int or scalar tensor).
        length_candidates: ``B`` in the paper, lengths decoded per sentence.
        iterations: ``T``, the most decoder passes.

    ``token_ids`` hold the kept candidate, padded with ``special_ids.pad`` up to the longest
    kept length (no BOS or EOS); ``scores`` its average token log-probability. Length
    candidates the length predictor could not fill (shorter sentences than candidates) rank
    last with a score of ``-1e9``.
    """
    if nbest is not None:
        check_nbest(nbest, length_candidates, f"mask_predict with length_candidates {length_candidates}")
    return _mask_predict(
        model, source_ids, special_ids, max_length, length_candidates, iterations, record=False, nbest=nbest
    )


def mask_predict_trace(model, source_ids, special_ids, max_length, length_candidates=4, iterations=10, **unused):
    """:func:`mask_predict` recording every iteration, for tests and inspection.

    Returns a dict: ``token_ids``, ``scores`` (as :func:`mask_predict`); ``best [B]`` (the kept
    candidate), ``lengths``, ``valid``, ``candidate_scores`` ``[B, k]``; ``iterations`` (decoder
    passes run); and per iteration ``i`` (0-based, pass ``i + 1``) and candidate:
    ``tokens [I, B, k, W]`` after the pass, their ``log_probs [I, B, k, W]``, ``masked
    [I, B, k, W]`` (the positions the pass re-predicted, [MASK] in its input) and ``active
    [I, B, k]`` (whether the candidate was decoded in that pass; stopped candidates keep their
    tokens).
    """
    return _mask_predict(model, source_ids, special_ids, max_length, length_candidates, iterations, record=True)
