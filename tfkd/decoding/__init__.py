"""Decoding algorithms, separate from the models they drive.

A model exposes ``encode(source_ids) -> (hidden, padding_mask)`` and
``decode(decoder_ids, hidden, padding_mask) -> logits``. Models that can decode one token at
a time from key/value caches also expose ``decode_first`` / ``decode_next`` (see
:class:`tfkd.models.TransformerSeq2Seq`); the algorithms use them when present and otherwise
re-run the decoder on the prefix. A cached state that is a dict may keep under ``"shared"``
what is the same for every hypothesis of a sentence (the cross-attention keys and values): beam
search never reorders it, and only takes out the rows of sentences that are done; and under
``"fixed"`` what is the same for every row (a table of position encodings), never gathered.
The rest of the state has a row per hypothesis. The algorithms own the
iterations, beams and stopping; they are TensorFlow graphs (``tf.while_loop`` over a
fixed-size token buffer) so the same code runs in ``tfkd translate`` and inside an exported
SavedModel.

Greedy and beam search live here; :mod:`tfkd.decoding.mask_predict` holds the parallel
(non-autoregressive) Mask-Predict decoder, and :mod:`tfkd.decoding.sampling` draws one sequence
per sentence from the model (temperature and nucleus; a function, not a spec's decoder). The
decoders are registered as ``decoder`` entries (``greedy``, ``beam``, ``mask_predict``) and
share one calling convention:
``decoder(model, source_ids, special_ids, max_length, **options) -> (token_ids [B, T], scores [B])``,
each ignoring the options it does not use. A decoder that keeps several hypotheses per
sentence also takes ``nbest=N`` and then returns the N best, best first: ``(token_ids
[B, N, T], scores [B, N])``; a decoder without an ``nbest`` parameter gives one hypothesis.
"""

import contextlib

import tensorflow as tf

from tfkd import registry
from tfkd.models.abilities import IncrementalDecoding

NEG_INF = -1e9


def gnmt_length_penalty(length, alpha):
    """``((5 + length) / 6) ** alpha`` (Wu et al., 2016)."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


class _Steps:
    """Log-probabilities of the next token, never padding or a second BOS. The penalty row is
    built at the first step, outside the decoding loop, and reused by every later step.

    ``encoder`` (the encoder's ``(hidden, padding_mask)``, a row per hypothesis) travels with
    the loop, so rows of sentences that are done can leave it (with the state's, by
    :meth:`reorder`). ``shrink`` (every caller but an XLA-compiled one, whose loop keeps its
    shapes) says they do."""

    def __init__(self, model, max_length, special_ids, static_shapes=False):
        self.model, self.max_length, self.special_ids = model, max_length, special_ids
        self.grow = self.shrink = not static_shapes  # XLA: caches allocated whole, shapes fixed
        self.banned = None

    def log_probs(self, logits):
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        if self.banned is None:
            vocab = tf.shape(log_probs)[-1]
            self.banned = (tf.one_hot(self.special_ids.pad, vocab) + tf.one_hot(self.special_ids.bos, vocab)) * NEG_INF
        return log_probs + self.banned


def _strided_slice_update(inputs, start_indices, updates):
    """``keras.ops.slice_update`` by TensorFlow's own kernel (``TensorStridedSliceUpdate``)."""
    begin = tf.stack([tf.cast(i, tf.int32) for i in start_indices])
    end = begin + tf.shape(updates, out_type=tf.int32)
    return tf.raw_ops.TensorStridedSliceUpdate(
        input=inputs, begin=begin, end=end, strides=tf.ones_like(begin), value=tf.cast(updates, inputs.dtype)
    )


@contextlib.contextmanager
def slice_update_without_xla():
    """Keras' TensorFlow backend writes a key/value cache position (``keras.ops.slice_update``,
    which keras-hub's cached attention calls every step) with ``XlaDynamicUpdateSlice``, an op
    that outside an XLA cluster is compiled by XLA for every new shape it meets. A growing cache
    has a new shape at every step (and a new batch at every row count), so translating
    Multi30k's 1,000 test sentences spent 43 s compiling it against 0.5 s running it. Inside
    this block Keras writes the slice with TensorFlow's own kernel instead: the same values, no
    compilation. (Graphs traced here keep that op; an XLA-compiled decoder does not use it.)
    The language model's continuation (keras-hub's samplers, whose prompt and caches are
    written the same way) is traced inside it too."""
    from keras.src.backend.tensorflow import core

    keras_slice_update = core.slice_update
    core.slice_update = _strided_slice_update
    try:
        yield
    finally:
        core.slice_update = keras_slice_update


class _CachedSteps(_Steps):
    """One decoder step at a time from the model's key/value caches."""

    def _without_xla(self):
        return slice_update_without_xla() if self.grow else contextlib.nullcontext()

    def first(self, encoder):
        hidden, padding_mask = encoder
        bos = tf.fill([tf.shape(hidden)[0]], self.special_ids.bos)
        with self._without_xla():
            logits, state = self.model.decode_first(bos, hidden, padding_mask, self.max_length, grow=self.grow)
        return self.log_probs(logits), state

    def next(self, sequences, index, state, encoder):
        with self._without_xla():
            logits, state = self.model.decode_next(sequences[:, index], index, *encoder, state, grow=self.grow)
        return self.log_probs(logits), state

    def loop_shapes(self, state):
        """The shapes ``state`` may take from step to step (a ``tf.while_loop`` invariant): a
        growing cache may change along any axis; what is under ``"shared"`` loses rows as
        sentences are done; what is under ``"fixed"``, and every cache with static shapes,
        stays as it is."""
        if not self.grow:
            return tf.nest.map_structure(lambda t: t.shape, state)
        if not isinstance(state, dict):
            return tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), state)
        shapes = {}
        for key, tree in state.items():
            if key == "fixed":
                shapes[key] = tf.nest.map_structure(lambda t: t.shape, tree)
            elif key == "shared":
                shapes[key] = tf.nest.map_structure(_any_rows, tree)
            else:
                shapes[key] = tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), tree)
        return shapes

    @staticmethod
    def reorder(state, flat_index, shared_index=None):
        """Rows ``flat_index`` of the per-hypothesis state (``None``: as they are), and with
        ``shared_index`` rows ``shared_index`` of what is under ``"shared"`` (the sentences
        still decoded); what is under ``"fixed"`` as it is."""
        if not isinstance(state, dict):
            return state if flat_index is None else _gather_rows(state, flat_index)
        reordered = {}
        for key, tree in state.items():
            index = None if key == "fixed" else shared_index if key == "shared" else flat_index
            reordered[key] = tree if index is None else _gather_rows(tree, index)
        return reordered


class _RecomputedSteps(_Steps):
    """Re-runs the full decoder on the prefix (for decoder layers without caches)."""

    def first(self, encoder):
        hidden, padding_mask = encoder
        bos = tf.fill([tf.shape(hidden)[0], 1], self.special_ids.bos)
        logits = self.model.decode(bos, hidden, padding_mask, training=False)
        return self.log_probs(logits[:, 0]), ()

    def next(self, sequences, index, state, encoder):
        logits = self.model.decode(sequences[:, : index + 1], *encoder, training=False)
        return self.log_probs(logits[:, index]), state

    @staticmethod
    def loop_shapes(state):
        return tf.nest.map_structure(lambda t: t.shape, state)

    @staticmethod
    def reorder(state, flat_index, shared_index=None):
        return state


def _any_rows(tensor):
    """``tensor``'s shape with any number of rows (a ``tf.while_loop`` invariant)."""
    return tf.TensorShape([None]).concatenate(tf.convert_to_tensor(tensor).shape[1:])


def _loop(cond, body, loop_vars, steps, fixed=0):
    """``tf.while_loop`` whose last loop variable is the decoder ``steps``' state (which may
    grow from step to step). The first ``fixed`` loop variables keep their shapes; the others
    lose rows as sentences are done when ``steps.shrink``."""
    per_row = _any_rows if steps.shrink else (lambda t: tf.convert_to_tensor(t).shape)
    shapes = [
        tf.nest.map_structure(per_row if i >= fixed else (lambda t: tf.convert_to_tensor(t).shape), v)
        for i, v in enumerate(loop_vars[:-1])
    ]
    return tf.while_loop(cond, body, loop_vars, shape_invariants=(*shapes, steps.loop_shapes(loop_vars[-1])))


def _steps(model, max_length, special_ids, static_shapes=False):
    incremental = isinstance(model, IncrementalDecoding) and model.supports_incremental_decoding()
    steps_class = _CachedSteps if incremental else _RecomputedSteps
    return steps_class(model, max_length, special_ids, static_shapes)


def _gather_rows(tree, index):
    return tf.nest.map_structure(lambda t: tf.gather(t, index), tree)


@registry.register("decoder", "greedy")
def greedy_search(model, source_ids, special_ids, max_length, static_shapes=False, **unused):
    """Pick the most likely token at every step. Returns ``(token_ids [B, T], log_prob [B])``.

    A sentence that has ended leaves the batch: the steps after it compute only the others.
    ``static_shapes`` (an XLA-compiled caller): key/value caches of ``max_length + 1``
    positions from the start instead of growing with the prefix, and ended sentences stay in
    the batch (their tokens padding)."""

    def most_likely(step, log_probs, sentences):
        return tf.argmax(log_probs, axis=-1, output_type=tf.int32)

    return one_per_sentence(model, source_ids, special_ids, max_length, most_likely, static_shapes)


def one_per_sentence(model, source_ids, special_ids, max_length, pick, static_shapes=False):
    """One hypothesis per sentence, a token a step: ``pick(step, log_probs [R, V], sentences
    [R])`` chooses each row's next token (int32 ``[R]``), ``sentences`` being the sentence
    (row of ``source_ids``) each row decodes. Greedy search picks the most likely;
    :func:`tfkd.decoding.sampling.sample_search` draws one. Returns ``(token_ids [B, T],
    log_prob [B])``, the log-probability under the model of the tokens picked."""
    encoder = model.encode(source_ids, training=False)
    batch = tf.shape(source_ids)[0]
    steps = _steps(model, max_length, special_ids, static_shapes)
    sequences = tf.concat([tf.fill([batch, 1], special_ids.bos), tf.fill([batch, max_length], special_ids.pad)], 1)
    zeros = (tf.zeros([batch], tf.bool), tf.zeros([batch], tf.float32))

    def advance(step, log_probs, rows, finished, score, sentences):
        token = pick(step, log_probs, sentences)
        token_log_prob = tf.gather(log_probs, token, batch_dims=1)
        token = tf.where(finished, special_ids.pad, token)
        score += tf.where(finished, 0.0, token_log_prob)
        count = tf.shape(rows)[0]
        rows = tf.tensor_scatter_nd_update(rows, tf.stack([tf.range(count), tf.fill([count], step + 1)], 1), token)
        return rows, finished | tf.equal(token, special_ids.eos), score

    log_probs, state = steps.first(encoder)
    rows, finished, score = advance(0, log_probs, sequences, *zeros, tf.range(batch))
    decoded = (tf.range(batch), sequences, zeros[1])
    decoded, rows, finished, score, encoder, state = _leave(steps, decoded, rows, finished, score, encoder, state)

    def body(step, decoded, rows, finished, score, encoder, state):
        log_probs, state = steps.next(rows, step, state, encoder)
        sentences = decoded[0] if steps.shrink else tf.range(batch)
        rows, finished, score = advance(step, log_probs, rows, finished, score, sentences)
        return (step + 1, *_leave(steps, decoded, rows, finished, score, encoder, state))

    def cond(step, decoded, rows, finished, score, encoder, state):
        return (step < max_length) & ~tf.reduce_all(finished)

    loop_vars = (1, decoded, rows, finished, score, encoder, state)
    _, decoded, rows, _, score, _, _ = _loop(cond, body, loop_vars, steps, fixed=1)
    if not steps.shrink:
        return rows[:, 1:], score
    active, sequences, scores = decoded  # those still decoding at max_length
    sequences = tf.tensor_scatter_nd_update(sequences, active[:, None], rows)
    return sequences[:, 1:], tf.tensor_scatter_nd_update(scores, active[:, None], score)


def _leave(steps, decoded, rows, finished, score, encoder, state):
    """Greedy search's sentences that have ended written into ``decoded`` (``(sentence of each
    row, token ids [B, T + 1], scores [B])``) and, when ``steps.shrink``, taken out of the loop's
    rows, the encoder output and the model's state once some have ended."""
    if not steps.shrink:
        return decoded, rows, finished, score, encoder, state
    ended, keep = tf.where(finished)[:, 0], tf.where(~finished)[:, 0]

    def shrunk():
        active, sequences, scores = decoded
        sentences = tf.gather(active, ended)[:, None]
        written = (
            tf.tensor_scatter_nd_update(sequences, sentences, tf.gather(rows, ended)),
            tf.tensor_scatter_nd_update(scores, sentences, tf.gather(score, ended)),
        )
        kept = _gather_rows((active, rows, finished, score, encoder), keep)
        return (kept[0], *written), *kept[1:], steps.reorder(state, keep, keep)

    return tf.cond(tf.size(ended) > 0, shrunk, lambda: (decoded, rows, finished, score, encoder, state))


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
    step's ``beam_size`` best candidates. ``"exact"``: once no alive hypothesis can beat its
    worst finished one at any length up to ``max_length`` (with ``alpha >= 0``, its
    log-probability over the penalty at ``max_length``), every ended candidate of the
    ``2 * beam_size`` considered. A sentence that is done leaves the batch: its results are
    kept as they are and the steps after it compute only the others. The loop ends when every
    sentence is done.

    ``static_shapes`` (an XLA-compiled caller): key/value caches of ``max_length + 1``
    positions from the start instead of growing with the prefix, and sentences that are done
    stay in the batch (their results no longer change).
    """
    if early_stopping not in EARLY_STOPPING:
        raise ValueError(f"early_stopping {early_stopping!r}: expected one of {', '.join(EARLY_STOPPING)}")
    if nbest is not None:
        check_nbest(nbest, beam_size, f"beam search with beam_size {beam_size}")
    search = _BeamSearch(max_length, beam_size, length_penalty, early_stopping, special_ids, static_shapes)
    hidden, padding_mask = model.encode(source_ids, training=False)
    # every beam reads the same encoder output: [B, ...] -> [B * beam, ...]
    encoder = (tf.repeat(hidden, beam_size, axis=0), tf.repeat(padding_mask, beam_size, axis=0))
    steps = _steps(model, max_length, special_ids, static_shapes)
    batch = tf.shape(source_ids)[0]
    hypotheses = search.start(batch)
    decoded = (tf.range(batch), hypotheses[2], hypotheses[3])  # the sentences decoding, and the results

    log_probs, state = steps.first(encoder)
    hypotheses, origin = search.advance(0, log_probs, hypotheses)
    decoded, hypotheses, encoder, state = search.leave(steps, decoded, hypotheses, encoder, state, origin)

    def body(step, decoded, hypotheses, encoder, state):
        count = tf.shape(hypotheses[0])[0]
        log_probs, state = steps.next(tf.reshape(hypotheses[0], [count * beam_size, -1]), step, state, encoder)
        hypotheses, origin = search.advance(step, log_probs, hypotheses)
        return (step + 1, *search.leave(steps, decoded, hypotheses, encoder, state, origin))

    def cond(step, decoded, hypotheses, encoder, state):
        if steps.shrink:  # the sentences that are done have left
            return (step < max_length) & (tf.shape(hypotheses[0])[0] > 0)
        return (step < max_length) & ~tf.reduce_all(search.done(hypotheses))

    result = _loop(cond, body, (1, decoded, hypotheses, encoder, state), steps, fixed=1)
    (active, finished_seq, finished_score), hypotheses = result[1], result[2]
    if steps.shrink:  # the sentences still decoding at max_length
        finished_seq = tf.tensor_scatter_nd_update(finished_seq, active[:, None], hypotheses[2])
        finished_score = tf.tensor_scatter_nd_update(finished_score, active[:, None], hypotheses[3])
    else:
        finished_seq, finished_score = hypotheses[2], hypotheses[3]
    if nbest is not None:
        return finished_seq[:, :nbest, 1:], finished_score[:, :nbest]
    return finished_seq[:, 0, 1:], finished_score[:, 0]


class _BeamSearch:
    """The bookkeeping of :func:`beam_search`. Its hypotheses are ``(alive_seq [S, beam, T + 1],
    alive_log_prob [S, beam], finished_seq [S, beam, T + 1], finished_score [S, beam],
    finished_any [S, beam])`` for the ``S`` sentences still decoding."""

    def __init__(self, max_length, beam, length_penalty, early_stopping, special_ids, keeps_done_rows):
        self.max_length, self.beam, self.length_penalty = max_length, beam, length_penalty
        self.early_stopping, self.special_ids = early_stopping, special_ids
        self.keeps_done_rows = keeps_done_rows  # static shapes: sentences that are done stay in the batch

    def start(self, batch):
        beam, width, ids = self.beam, self.max_length + 1, self.special_ids
        alive_seq = tf.concat(
            [tf.fill([batch, beam, 1], ids.bos), tf.fill([batch, beam, self.max_length], ids.pad)], axis=2
        )
        alive_log_prob = tf.tile(tf.concat([[0.0], tf.fill([beam - 1], NEG_INF)], 0)[tf.newaxis], [batch, 1])
        finished = (tf.fill([batch, beam, width], ids.pad), tf.fill([batch, beam], NEG_INF))
        return (alive_seq, alive_log_prob, *finished, tf.zeros([batch, beam], tf.bool))

    def advance(self, step, log_probs, hypotheses):
        """Extend every alive beam by every token; keep the best alive and finished beams.

        Returns the new hypotheses and, per new alive beam, the old beam it extends.
        """
        alive_seq, alive_log_prob, finished_seq, finished_score, finished_any = hypotheses
        beam, count, vocab = self.beam, tf.shape(alive_seq)[0], tf.shape(log_probs)[-1]
        candidates = alive_log_prob[:, :, tf.newaxis] + tf.reshape(log_probs, [count, beam, vocab])
        top_log_prob, top_index = tf.math.top_k(tf.reshape(candidates, [count, beam * vocab]), k=2 * beam)
        top_beam, top_token = top_index // vocab, top_index % vocab
        candidates_index = tf.tile(tf.range(2 * beam)[tf.newaxis], [count, 1])
        rows = tf.repeat(tf.range(count)[:, tf.newaxis], 2 * beam, axis=1)
        top_seq = tf.tensor_scatter_nd_update(
            _gather_beams(alive_seq, top_beam),
            tf.stack([rows, candidates_index, tf.fill(tf.shape(top_token), step + 1)], axis=-1),
            top_token,
        )
        valid = top_log_prob > NEG_INF / 2
        ends = tf.equal(top_token, self.special_ids.eos) | tf.equal(step + 1, self.max_length)

        # alive: the best `beam` candidates that did not end
        new_alive_log_prob, alive_index = tf.math.top_k(tf.where(ends, NEG_INF, top_log_prob), k=beam)
        new_alive_seq = _gather_beams(top_seq, alive_index)
        origin = _gather_beams(top_beam, alive_index)

        # finished: merge those that ended with the ones kept so far (fairseq's rule: only those
        # among the best `beam` candidates, so a sentence does not fill up with unlikely short ones)
        ended = ends & valid
        if self.early_stopping == "beam_size":
            ended &= candidates_index < beam
        ended_score = tf.where(ended, top_log_prob / gnmt_length_penalty(step + 1, self.length_penalty), NEG_INF)
        new_finished_score, finished_index = tf.math.top_k(tf.concat([finished_score, ended_score], 1), k=beam)
        new_finished_seq = _gather_beams(tf.concat([finished_seq, top_seq], axis=1), finished_index)
        new_finished_any = _gather_beams(tf.concat([finished_any, ended], axis=1), finished_index)
        if self.early_stopping == "beam_size" and self.keeps_done_rows:  # a done sentence still in the batch
            done = tf.reduce_all(finished_any, axis=1)
            new_finished_seq = tf.where(done[:, None, None], finished_seq, new_finished_seq)
            new_finished_score = tf.where(done[:, None], finished_score, new_finished_score)
            new_finished_any = tf.where(done[:, None], finished_any, new_finished_any)
        return (new_alive_seq, new_alive_log_prob, new_finished_seq, new_finished_score, new_finished_any), origin

    def done(self, hypotheses):
        """Per sentence: whether it is done (see :func:`beam_search`'s ``early_stopping``)."""
        alive_log_prob, finished_score, finished_any = hypotheses[1], hypotheses[3], hypotheses[4]
        full = tf.reduce_all(finished_any, axis=1)  # beam_size finished hypotheses
        if self.early_stopping == "beam_size":
            return full
        # no alive hypothesis can still beat the worst finished one: with alpha >= 0 the best
        # an alive beam can reach is its log-prob over lp(max_length)
        best_alive = alive_log_prob[:, 0] / gnmt_length_penalty(self.max_length, self.length_penalty)
        return full & (tf.reduce_min(finished_score, axis=1) >= best_alive)

    def leave(self, steps, decoded, hypotheses, encoder, state, origin):
        """The model's state reordered to the beams ``origin`` names; when ``steps.shrink``, the
        sentences that are done written into ``decoded`` and taken out of the batch."""
        beam = self.beam
        count = tf.shape(origin)[0]
        if not steps.shrink:
            return decoded, hypotheses, encoder, steps.reorder(state, _flat(origin, tf.range(count), beam))
        done = self.done(hypotheses)
        ended, keep = tf.where(done)[:, 0], tf.where(~done)[:, 0]
        state = steps.reorder(state, _flat(tf.gather(origin, keep), keep, beam))

        def shrunk():
            active, finished_seq, finished_score = decoded
            sentences = tf.gather(active, ended)[:, None]
            kept_beams = _flat(tf.tile(tf.range(beam)[tf.newaxis], [tf.size(keep), 1]), keep, beam)
            return (
                (
                    tf.gather(active, keep),
                    tf.tensor_scatter_nd_update(finished_seq, sentences, tf.gather(hypotheses[2], ended)),
                    tf.tensor_scatter_nd_update(finished_score, sentences, tf.gather(hypotheses[3], ended)),
                ),
                _gather_rows(hypotheses, keep),
                _gather_rows(encoder, kept_beams),
                steps.reorder(state, None, kept_beams),
            )

        return tf.cond(tf.size(ended) > 0, shrunk, lambda: (decoded, hypotheses, encoder, state))


def _flat(beams, sentences, beam):
    """Rows ``[S * beam]`` of a ``[B * beam, ...]`` tensor: beam ``beams[s, k]`` of sentence
    ``sentences[s]``."""
    sentences = tf.cast(sentences, beams.dtype)
    return tf.reshape(beams + sentences[:, tf.newaxis] * beam, [-1])
