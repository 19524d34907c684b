"""Decoding algorithms, separate from the models they drive.

A model exposes ``encode(source_ids) -> (hidden, padding_mask)`` and
``decode(decoder_ids, hidden, padding_mask) -> logits``; the algorithms here own the
iterations, beams and stopping. They are written as TensorFlow graphs (``tf.while_loop``
over a fixed-size token buffer) so the same code runs in ``tfkd translate`` and inside an
exported SavedModel.
"""

import tensorflow as tf

NEG_INF = -1e9


def gnmt_length_penalty(length, alpha):
    """``((5 + length) / 6) ** alpha`` (Wu et al., 2016)."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def _step_log_probs(model, buffer, step, hidden, padding_mask, special_ids):
    logits = model.decode(buffer, hidden, padding_mask, training=False)
    log_probs = tf.nn.log_softmax(tf.cast(logits[:, step, :], tf.float32), axis=-1)
    # never emit padding or a second BOS
    vocab = tf.shape(log_probs)[-1]
    banned = tf.one_hot(special_ids.pad, vocab) + tf.one_hot(special_ids.bos, vocab)
    return log_probs + banned * NEG_INF


def greedy_search(model, source_ids, special_ids, max_length, **unused):
    """Pick the most likely token at every step. Returns ``(token_ids [B, T], log_prob [B])``."""
    hidden, padding_mask = model.encode(source_ids, training=False)
    batch = tf.shape(source_ids)[0]
    buffer = tf.concat(
        [tf.fill([batch, 1], special_ids.bos), tf.fill([batch, max_length], special_ids.pad)], 1
    )

    def body(step, buffer, finished, score):
        log_probs = _step_log_probs(model, buffer[:, :-1], step, hidden, padding_mask, special_ids)
        token = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
        token_log_prob = tf.gather(log_probs, token, batch_dims=1)
        token = tf.where(finished, special_ids.pad, token)
        score += tf.where(finished, 0.0, token_log_prob)
        buffer = tf.tensor_scatter_nd_update(
            buffer, tf.stack([tf.range(batch), tf.fill([batch], step + 1)], 1), token
        )
        return step + 1, buffer, finished | tf.equal(token, special_ids.eos), score

    def cond(step, buffer, finished, score):
        return (step < max_length) & ~tf.reduce_all(finished)

    _, buffer, _, score = tf.while_loop(
        cond, body, (0, buffer, tf.zeros([batch], tf.bool), tf.zeros([batch], tf.float32))
    )
    return buffer[:, 1:], score


def _gather_beams(tensor, indices):
    return tf.gather(tensor, indices, batch_dims=1)


def beam_search(model, source_ids, special_ids, max_length, beam_size=4, length_penalty=0.6,
                **unused):
    """Beam search with the GNMT length penalty.

    A hypothesis' score is ``log P(y) / ((5 + |y|) / 6) ** alpha``, ``|y|`` counting the EOS
    token. Hypotheses still alive after ``max_length`` steps are scored as if they ended
    there. Returns the best ``(token_ids [B, T], score [B])`` per sentence.
    """
    beam = beam_size
    hidden, padding_mask = model.encode(source_ids, training=False)
    batch = tf.shape(source_ids)[0]
    # tile the encoder output: [B, ...] -> [B * beam, ...]
    hidden = tf.repeat(hidden, beam, axis=0)
    padding_mask = tf.repeat(padding_mask, beam, axis=0)
    width = max_length + 1

    alive_seq = tf.concat(
        [tf.fill([batch, beam, 1], special_ids.bos), tf.fill([batch, beam, max_length], special_ids.pad)],
        axis=2,
    )
    alive_log_prob = tf.tile(
        tf.concat([[0.0], tf.fill([beam - 1], NEG_INF)], 0)[tf.newaxis], [batch, 1]
    )
    finished_seq = tf.fill([batch, beam, width], special_ids.pad)
    finished_score = tf.fill([batch, beam], NEG_INF)
    finished_any = tf.zeros([batch, beam], tf.bool)

    def body(step, alive_seq, alive_log_prob, finished_seq, finished_score, finished_any):
        flat = tf.reshape(alive_seq, [batch * beam, width])[:, :-1]
        log_probs = _step_log_probs(model, flat, step, hidden, padding_mask, special_ids)
        vocab = tf.shape(log_probs)[-1]
        candidates = alive_log_prob[:, :, tf.newaxis] + tf.reshape(log_probs, [batch, beam, vocab])
        candidates = tf.reshape(candidates, [batch, beam * vocab])
        top_log_prob, top_index = tf.math.top_k(candidates, k=2 * beam)
        top_beam, top_token = top_index // vocab, top_index % vocab
        top_seq = _gather_beams(alive_seq, top_beam)
        position = tf.fill(tf.shape(top_token), step + 1)
        top_seq = tf.tensor_scatter_nd_update(
            top_seq,
            tf.stack(
                [
                    tf.repeat(tf.range(batch)[:, tf.newaxis], 2 * beam, axis=1),
                    tf.tile(tf.range(2 * beam)[tf.newaxis], [batch, 1]),
                    position,
                ],
                axis=-1,
            ),
            top_token,
        )
        is_eos = tf.equal(top_token, special_ids.eos)
        last_step = tf.equal(step + 1, max_length)
        ends = is_eos | last_step

        # alive: the best `beam` candidates that did not end
        alive_candidates = tf.where(ends, NEG_INF, top_log_prob)
        new_alive_log_prob, alive_index = tf.math.top_k(alive_candidates, k=beam)
        new_alive_seq = _gather_beams(top_seq, alive_index)

        # finished: merge those that ended with the ones kept so far
        ended_score = tf.where(ends, top_log_prob / gnmt_length_penalty(step + 1, length_penalty), NEG_INF)
        ended_score = tf.where(top_log_prob <= NEG_INF / 2, NEG_INF, ended_score)
        merged_seq = tf.concat([finished_seq, top_seq], axis=1)
        merged_score = tf.concat([finished_score, ended_score], axis=1)
        merged_any = tf.concat([finished_any, ends & (top_log_prob > NEG_INF / 2)], axis=1)
        new_finished_score, finished_index = tf.math.top_k(merged_score, k=beam)
        new_finished_seq = _gather_beams(merged_seq, finished_index)
        new_finished_any = _gather_beams(merged_any, finished_index)
        return (step + 1, new_alive_seq, new_alive_log_prob, new_finished_seq,
                new_finished_score, new_finished_any)

    def cond(step, alive_seq, alive_log_prob, finished_seq, finished_score, finished_any):
        # stop when no alive hypothesis can still beat the worst finished one: with
        # alpha >= 0 the best an alive beam can reach is its log-prob over lp(max_length)
        best_alive = alive_log_prob[:, 0] / gnmt_length_penalty(max_length, length_penalty)
        worst_finished = tf.where(
            tf.reduce_all(finished_any, axis=1), tf.reduce_min(finished_score, axis=1), NEG_INF
        )
        return (step < max_length) & ~tf.reduce_all(worst_finished >= best_alive)

    _, _, _, finished_seq, finished_score, _ = tf.while_loop(
        cond,
        body,
        (0, alive_seq, alive_log_prob, finished_seq, finished_score, finished_any),
    )
    return finished_seq[:, 0, 1:], finished_score[:, 0]


DECODERS = {"greedy": greedy_search, "beam": beam_search}


def decoder(name):
    try:
        return DECODERS[name]
    except KeyError:
        raise ValueError(f'unknown decoding algorithm "{name}"; choices: {", ".join(DECODERS)}') from None
