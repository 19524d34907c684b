"""Decoding algorithms, separate from the models they drive.

A model exposes ``encode(source_ids) -> (hidden, padding_mask)`` and
``decode(decoder_ids, hidden, padding_mask) -> logits``. Models that can decode one token at
a time from key/value caches also expose ``decode_first`` / ``decode_next`` (see
:class:`tfkd.models.TransformerSeq2Seq`); the algorithms use them when present and otherwise
re-run the decoder on the prefix. A cached state that is a dict may keep under ``"shared"``
what is the same for every hypothesis of a sentence (the cross-attention keys and values, a
table of position encodings): beam search never reorders it. The algorithms own the
iterations, beams and stopping; they are TensorFlow graphs (``tf.while_loop`` over a
fixed-size token buffer) so the same code runs in ``tfkd translate`` and inside an exported
SavedModel.

Greedy and beam search live here; :mod:`tfkd.decoding.mask_predict` holds the parallel
(non-autoregressive) Mask-Predict decoder. All are registered as ``decoder`` entries
(``greedy``, ``beam``, ``mask_predict``) and share one calling convention:
``decoder(model, source_ids, special_ids, max_length, **options) -> (token_ids [B, T], scores [B])``,
each ignoring the options it does not use. A decoder that keeps several hypotheses per
sentence also takes ``nbest=N`` and then returns the N best, best first: ``(token_ids
[B, N, T], scores [B, N])``; a decoder without an ``nbest`` parameter gives one hypothesis.
"""

import tensorflow as tf

from tfkd import registry
from tfkd.models.abilities import IncrementalDecoding

NEG_INF = -1e9


def gnmt_length_penalty(length, alpha):
    """``((5 + length) / 6) ** alpha`` (Wu et al., 2016)."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


class _Steps:
    """Log-probabilities of the next token, never padding or a second BOS. The penalty row is
    built at the first step, outside the decoding loop, and reused by every later step."""

    def __init__(self, model, hidden, padding_mask, max_length, special_ids, static_shapes=False):
        self.model, self.hidden, self.padding_mask = model, hidden, padding_mask
        self.max_length, self.special_ids = max_length, special_ids
        self.grow = not static_shapes  # XLA: caches allocated whole, shapes fixed in the loop
        self.banned = None

    def log_probs(self, logits):
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        if self.banned is None:
            vocab = tf.shape(log_probs)[-1]
            self.banned = (tf.one_hot(self.special_ids.pad, vocab) + tf.one_hot(self.special_ids.bos, vocab)) * NEG_INF
        return log_probs + self.banned


class _CachedSteps(_Steps):
    """One decoder step at a time from the model's key/value caches."""

    def first(self):
        bos = tf.fill([tf.shape(self.hidden)[0]], self.special_ids.bos)
        logits, state = self.model.decode_first(bos, self.hidden, self.padding_mask, self.max_length, grow=self.grow)
        return self.log_probs(logits), state

    def next(self, sequences, index, state):
        logits, state = self.model.decode_next(
            sequences[:, index], index, self.hidden, self.padding_mask, state, grow=self.grow
        )
        return self.log_probs(logits), state

    def loop_shapes(self, state):
        """The shapes ``state`` may take from step to step (a ``tf.while_loop`` invariant): a
        growing cache may change along any axis; what is under ``"shared"``, and every cache
        with static shapes, stays as it is."""
        if not self.grow:
            return tf.nest.map_structure(lambda t: t.shape, state)

        def relaxed(tree):
            return tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), tree)

        if isinstance(state, dict) and "shared" in state:
            shared = tf.nest.map_structure(lambda t: t.shape, state["shared"])
            return {**relaxed({k: v for k, v in state.items() if k != "shared"}), "shared": shared}
        return relaxed(state)

    @staticmethod
    def reorder(state, flat_index):
        def gather(tree):
            return tf.nest.map_structure(lambda t: tf.gather(t, flat_index), tree)

        if isinstance(state, dict) and "shared" in state:
            return {**gather({k: v for k, v in state.items() if k != "shared"}), "shared": state["shared"]}
        return gather(state)


class _RecomputedSteps(_Steps):
    """Re-runs the full decoder on the prefix (for decoder layers without caches)."""

    def first(self):
        bos = tf.fill([tf.shape(self.hidden)[0], 1], self.special_ids.bos)
        logits = self.model.decode(bos, self.hidden, self.padding_mask, training=False)
        return self.log_probs(logits[:, 0]), ()

    def next(self, sequences, index, state):
        logits = self.model.decode(sequences[:, : index + 1], self.hidden, self.padding_mask, training=False)
        return self.log_probs(logits[:, index]), state

    @staticmethod
    def loop_shapes(state):
        return tf.nest.map_structure(lambda t: t.shape, state)

    @staticmethod
    def reorder(state, flat_index):
        return state


def _loop(cond, body, loop_vars, steps):
    """``tf.while_loop`` whose last loop variable is the decoder ``steps``' state (which may
    grow from step to step); the others keep their shapes."""
    shapes = [tf.nest.map_structure(lambda t: tf.convert_to_tensor(t).shape, v) for v in loop_vars[:-1]]
    return tf.while_loop(cond, body, loop_vars, shape_invariants=(*shapes, steps.loop_shapes(loop_vars[-1])))


def _steps(model, hidden, padding_mask, max_length, special_ids, static_shapes=False):
    incremental = isinstance(model, IncrementalDecoding) and model.supports_incremental_decoding()
    steps_class = _CachedSteps if incremental else _RecomputedSteps
    return steps_class(model, hidden, padding_mask, max_length, special_ids, static_shapes)


@registry.register("decoder", "greedy")
def greedy_search(model, source_ids, special_ids, max_length, static_shapes=False, **unused):
    """Pick the most likely token at every step. Returns ``(token_ids [B, T], log_prob [B])``.
    ``static_shapes`` (an XLA-compiled caller): key/value caches of ``max_length + 1``
    positions from the start instead of growing with the prefix."""
    hidden, padding_mask = model.encode(source_ids, training=False)
    batch = tf.shape(source_ids)[0]
    steps = _steps(model, hidden, padding_mask, max_length, special_ids, static_shapes)
    sequences = tf.concat([tf.fill([batch, 1], special_ids.bos), tf.fill([batch, max_length], special_ids.pad)], 1)

    def advance(step, log_probs, sequences, finished, score):
        token = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
        token_log_prob = tf.gather(log_probs, token, batch_dims=1)
        token = tf.where(finished, special_ids.pad, token)
        score += tf.where(finished, 0.0, token_log_prob)
        sequences = tf.tensor_scatter_nd_update(
            sequences, tf.stack([tf.range(batch), tf.fill([batch], step + 1)], 1), token
        )
        return sequences, finished | tf.equal(token, special_ids.eos), score

    log_probs, state = steps.first()
    sequences, finished, score = advance(
        0, log_probs, sequences, tf.zeros([batch], tf.bool), tf.zeros([batch], tf.float32)
    )

    def body(step, sequences, finished, score, state):
        log_probs, state = steps.next(sequences, step, state)
        return (step + 1, *advance(step, log_probs, sequences, finished, score), state)

    def cond(step, sequences, finished, score, state):
        return (step < max_length) & ~tf.reduce_all(finished)

    _, sequences, _, score, _ = _loop(cond, body, (1, sequences, finished, score, state), steps)
    return sequences[:, 1:], score


def _gather_beams(tensor, indices):
    return tf.gather(tensor, indices, batch_dims=1)


def check_nbest(nbest, width, what):
    """``nbest`` must be between 1 and the number of hypotheses the decoder keeps."""
    if not 1 <= int(nbest) <= int(width):
        raise ValueError(f"{what} keeps {width} hypotheses per sentence; nbest {nbest} is not between 1 and {width}")


EARLY_STOPPING = ("beam_size", "exact")


@registry.register("decoder", "beam")
def beam_search(
    model,
    source_ids,
    special_ids,
    max_length,
    beam_size=4,
    length_penalty=0.6,
    nbest=None,
    early_stopping="beam_size",
    static_shapes=False,
    **unused,
):
    """Beam search with the GNMT length penalty.

    A hypothesis' score is ``log P(y) / ((5 + |y|) / 6) ** alpha``, ``|y|`` counting the EOS
    token. Hypotheses still alive after ``max_length`` steps are scored as if they ended
    there. Returns the best ``(token_ids [B, T], score [B])`` per sentence, or with ``nbest=N``
    (at most ``beam_size``) the N best finished hypotheses, ``([B, N, T], [B, N])``, best first.

    ``early_stopping``: when a sentence is done. ``"beam_size"`` (fairseq's rule): once it has
    ``beam_size`` finished hypotheses, a hypothesis finishing only when its end is among the
    step's ``beam_size`` best candidates; its results are then kept as they are while the
    batch's other sentences go on. ``"exact"``: once no alive hypothesis can beat its worst finished one
    at any length up to ``max_length`` (with ``alpha >= 0``, its log-probability over the
    penalty at ``max_length``), every ended candidate of the ``2 * beam_size`` considered. The
    loop ends when every sentence of the batch is done.

    ``static_shapes`` (an XLA-compiled caller): key/value caches of ``max_length + 1``
    positions from the start instead of growing with the prefix.
    """
    if early_stopping not in EARLY_STOPPING:
        raise ValueError(f"early_stopping {early_stopping!r}: expected one of {', '.join(EARLY_STOPPING)}")
    beam = beam_size
    if nbest is not None:
        check_nbest(nbest, beam, f"beam search with beam_size {beam}")
    hidden, padding_mask = model.encode(source_ids, training=False)
    batch = tf.shape(source_ids)[0]
    # every beam reads the same encoder output: [B, ...] -> [B * beam, ...]
    hidden = tf.repeat(hidden, beam, axis=0)
    padding_mask = tf.repeat(padding_mask, beam, axis=0)
    steps = _steps(model, hidden, padding_mask, max_length, special_ids, static_shapes)
    width = max_length + 1

    alive_seq = tf.concat(
        [tf.fill([batch, beam, 1], special_ids.bos), tf.fill([batch, beam, max_length], special_ids.pad)],
        axis=2,
    )
    alive_log_prob = tf.tile(tf.concat([[0.0], tf.fill([beam - 1], NEG_INF)], 0)[tf.newaxis], [batch, 1])
    finished_seq = tf.fill([batch, beam, width], special_ids.pad)
    finished_score = tf.fill([batch, beam], NEG_INF)
    finished_any = tf.zeros([batch, beam], tf.bool)
    rows = tf.repeat(tf.range(batch)[:, tf.newaxis], 2 * beam, axis=1)
    candidates_index = tf.tile(tf.range(2 * beam)[tf.newaxis], [batch, 1])

    def advance(step, log_probs, alive_seq, alive_log_prob, finished_seq, finished_score, finished_any):
        """Extend every alive beam by every token; keep the best alive and finished beams.

        Returns the new search state and, per new alive beam, the old beam it extends.
        """
        vocab = tf.shape(log_probs)[-1]
        candidates = alive_log_prob[:, :, tf.newaxis] + tf.reshape(log_probs, [batch, beam, vocab])
        top_log_prob, top_index = tf.math.top_k(tf.reshape(candidates, [batch, beam * vocab]), k=2 * beam)
        top_beam, top_token = top_index // vocab, top_index % vocab
        top_seq = tf.tensor_scatter_nd_update(
            _gather_beams(alive_seq, top_beam),
            tf.stack([rows, candidates_index, tf.fill(tf.shape(top_token), step + 1)], axis=-1),
            top_token,
        )
        valid = top_log_prob > NEG_INF / 2
        ends = tf.equal(top_token, special_ids.eos) | tf.equal(step + 1, max_length)

        # alive: the best `beam` candidates that did not end
        new_alive_log_prob, alive_index = tf.math.top_k(tf.where(ends, NEG_INF, top_log_prob), k=beam)
        new_alive_seq = _gather_beams(top_seq, alive_index)
        origin = _gather_beams(top_beam, alive_index)

        # finished: merge those that ended with the ones kept so far (fairseq's rule: only those
        # among the best `beam` candidates, so a sentence does not fill up with unlikely short ones)
        ended = ends & valid
        if early_stopping == "beam_size":
            ended &= candidates_index < beam
        ended_score = tf.where(ended, top_log_prob / gnmt_length_penalty(step + 1, length_penalty), NEG_INF)
        merged_score = tf.concat([finished_score, ended_score], axis=1)
        new_finished_score, finished_index = tf.math.top_k(merged_score, k=beam)
        new_finished_seq = _gather_beams(tf.concat([finished_seq, top_seq], axis=1), finished_index)
        new_finished_any = _gather_beams(tf.concat([finished_any, ended], axis=1), finished_index)
        if early_stopping == "beam_size":  # a sentence already done keeps its finished hypotheses
            done = tf.reduce_all(finished_any, axis=1)
            new_finished_seq = tf.where(done[:, None, None], finished_seq, new_finished_seq)
            new_finished_score = tf.where(done[:, None], finished_score, new_finished_score)
            new_finished_any = tf.where(done[:, None], finished_any, new_finished_any)
        search = (new_alive_seq, new_alive_log_prob, new_finished_seq, new_finished_score, new_finished_any)
        return search, origin

    def reorder(state, origin):
        return steps.reorder(state, tf.reshape(origin + tf.range(batch)[:, tf.newaxis] * beam, [-1]))

    log_probs, state = steps.first()
    search, origin = advance(0, log_probs, alive_seq, alive_log_prob, finished_seq, finished_score, finished_any)
    state = reorder(state, origin)

    def body(step, alive_seq, alive_log_prob, finished_seq, finished_score, finished_any, state):
        log_probs, state = steps.next(tf.reshape(alive_seq, [batch * beam, width]), step, state)
        search, origin = advance(step, log_probs, alive_seq, alive_log_prob, finished_seq, finished_score, finished_any)
        return (step + 1, *search, reorder(state, origin))

    def cond(step, alive_seq, alive_log_prob, finished_seq, finished_score, finished_any, state):
        full = tf.reduce_all(finished_any, axis=1)  # beam_size finished hypotheses
        if early_stopping == "beam_size":
            return (step < max_length) & ~tf.reduce_all(full)
        # no alive hypothesis can still beat the worst finished one: with alpha >= 0 the best
        # an alive beam can reach is its log-prob over lp(max_length)
        best_alive = alive_log_prob[:, 0] / gnmt_length_penalty(max_length, length_penalty)
        worst_finished = tf.where(full, tf.reduce_min(finished_score, axis=1), NEG_INF)
        return (step < max_length) & ~tf.reduce_all(worst_finished >= best_alive)

    result = _loop(cond, body, (1, *search, state), steps)
    finished_seq, finished_score = result[3], result[4]
    if nbest is not None:
        return finished_seq[:, :nbest, 1:], finished_score[:, :nbest]
    return finished_seq[:, 0, 1:], finished_score[:, 0]
