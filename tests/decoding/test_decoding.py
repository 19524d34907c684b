"""Beam search against exhaustive search on a tiny model, and greedy = beam of 1."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_transformer

from tfkd.data import SpecialIds
from tfkd.decoding import beam_search, gnmt_length_penalty, greedy_search

SPECIAL = SpecialIds(pad=0, bos=1, eos=2, unk=3)
VOCAB = 6  # pad, bos, eos, and three real tokens


@pytest.fixture(scope="module")
def tiny_model():
    model = tiny_transformer(8, VOCAB, seed=4)
    source = np.array([[4, 5, 6], [7, 3, 0]], np.int32)
    # spread the output distribution so different lengths genuinely compete
    kernel, bias = model.output_projection.get_weights()
    model.output_projection.set_weights([kernel * 8, bias + np.array([0, 0, 1.5, 0, 0, 0])])
    return model, source


def sequence_log_prob(model, source, prefix_tokens):
    hidden, mask = model.encode(source[None])
    decoder = np.array([[SPECIAL.bos] + list(prefix_tokens)], np.int32)
    logits = model.decode(decoder[:, :-1], hidden, mask).numpy()[0].astype("float64")
    log_probs = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    # the decoders never emit pad or bos
    log_probs[:, [SPECIAL.pad, SPECIAL.bos]] = -np.inf
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    return sum(log_probs[t, tok] for t, tok in enumerate(prefix_tokens))


_LOG_PROBS = {}  # (source, tokens) -> log P: the exhaustive searches share the tiny model


def exhaustive_ranked(model, source, max_length, alpha):
    """Score every hypothesis (sequences ending in EOS within max_length, or of max_length),
    best first, as ``[(score, tokens)]``."""
    scored = []
    for length in range(1, max_length + 1):
        for body in itertools.product([3, 4, 5], repeat=length - 1):
            for last in [SPECIAL.eos, 3, 4, 5]:
                tokens = list(body) + [last]
                if last != SPECIAL.eos and length != max_length:
                    continue
                key = (tuple(source.tolist()), tuple(tokens))
                if key not in _LOG_PROBS:
                    _LOG_PROBS[key] = sequence_log_prob(model, source, tokens)
                scored.append((_LOG_PROBS[key] / ((5 + length) / 6) ** alpha, tokens))
    return sorted(scored, key=lambda pair: -pair[0])


def exhaustive_best(model, source, max_length, alpha):
    return exhaustive_ranked(model, source, max_length, alpha)[0]


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_search_equals_exhaustive_search(tiny_model, alpha):
    model, sources = tiny_model
    max_length = 4
    # a beam wide enough to hold every hypothesis is exact
    tokens, scores = beam_search(model, tf.constant(sources), SPECIAL, max_length, beam_size=27, length_penalty=alpha)
    for row, source in enumerate(sources):
        score, expected = exhaustive_best(model, source, max_length, alpha)
        got = [t for t in tokens[row].numpy().tolist() if t != SPECIAL.pad]
        assert got == expected, (alpha, row)
        np.testing.assert_allclose(scores[row].numpy(), score, rtol=1e-4, atol=1e-4)


def test_beam_search_nbest_equals_the_exhaustive_ranking(tiny_model):
    model, sources = tiny_model
    max_length, alpha = 4, 0.6
    tokens, scores = beam_search(
        model, tf.constant(sources), SPECIAL, max_length, beam_size=27, length_penalty=alpha, nbest=5
    )
    assert tokens.shape[:2] == (2, 5) and scores.shape == (2, 5)
    best_tokens, best_scores = beam_search(
        model, tf.constant(sources), SPECIAL, max_length, beam_size=27, length_penalty=alpha
    )
    np.testing.assert_array_equal(tokens[:, 0].numpy(), best_tokens.numpy())
    np.testing.assert_array_equal(scores[:, 0].numpy(), best_scores.numpy())
    for row, source in enumerate(sources):
        ranked = exhaustive_ranked(model, source, max_length, alpha)[:5]
        got = [[t for t in hypothesis if t != SPECIAL.pad] for hypothesis in tokens[row].numpy().tolist()]
        assert got == [expected for _, expected in ranked], row
        np.testing.assert_allclose(scores[row].numpy(), [score for score, _ in ranked], rtol=1e-4, atol=1e-4)


def test_nbest_beyond_the_beam_is_refused(tiny_model):
    model, sources = tiny_model
    with pytest.raises(
        ValueError, match="beam search with beam_size 4 keeps 4 hypotheses per sentence; nbest 5 is not"
    ):
        beam_search(model, tf.constant(sources), SPECIAL, 4, beam_size=4, nbest=5)


def test_greedy_equals_step_by_step_argmax(tiny_model):
    from helpers import reference_greedy

    model, sources = tiny_model
    tokens, _ = greedy_search(model, tf.constant(sources), SPECIAL, 5)
    np.testing.assert_array_equal(tokens.numpy(), reference_greedy(model, tf.constant(sources), SPECIAL, 5))


def test_gnmt_length_penalty():
    np.testing.assert_allclose(gnmt_length_penalty(7, 0.6).numpy(), (12 / 6) ** 0.6, rtol=1e-6)


@pytest.mark.parametrize("algorithm", [greedy_search, beam_search])
def test_cached_decoding_equals_recomputing_the_prefix(tiny_model, monkeypatch, algorithm):
    model, sources = tiny_model
    assert model.supports_incremental_decoding()
    cached_tokens, cached_scores = algorithm(model, tf.constant(sources), SPECIAL, 6, beam_size=3)
    monkeypatch.setattr(model, "supports_incremental_decoding", lambda: False)
    tokens, scores = algorithm(model, tf.constant(sources), SPECIAL, 6, beam_size=3)
    np.testing.assert_array_equal(cached_tokens.numpy(), tokens.numpy())
    np.testing.assert_allclose(cached_scores.numpy(), scores.numpy(), rtol=1e-5, atol=1e-5)


def next_log_probs(model, source, prefix):
    """float64 log-probabilities of the token after ``prefix`` (pad and bos never chosen)."""
    hidden, mask = model.encode(source[None])
    logits = model.decode(np.array([[SPECIAL.bos, *prefix]], np.int32), hidden, mask).numpy()[0, -1].astype("float64")
    logits[[SPECIAL.pad, SPECIAL.bos]] = -np.inf
    return logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())


def reference_beam_search(model, source, max_length, beam, alpha):
    """fairseq's rule, one sentence at a time: the best 2 * beam extensions of the alive
    hypotheses; those among the best beam that end (EOS, or max_length reached) join the
    finished ones (the best beam kept), the best beam that do not end stay alive; done with beam
    finished. ``(score, tokens)``."""
    alive, finished = [(0.0, [])], []
    for step in range(max_length):
        extensions = [
            (log_prob + token_log_prob, [*tokens, token])
            for log_prob, tokens in alive
            for token, token_log_prob in enumerate(next_log_probs(model, source, tokens))
            if np.isfinite(token_log_prob)
        ]
        best = sorted(extensions, key=lambda e: -e[0])[: 2 * beam]
        ends = [e for e in best if e[1][-1] == SPECIAL.eos or step + 1 == max_length]
        finishing = [e for e in best[:beam] if e in ends]  # ends among the best beam only
        finished = sorted(
            finished + [(log_prob / ((5 + len(t)) / 6) ** alpha, t) for log_prob, t in finishing], key=lambda f: -f[0]
        )[:beam]
        alive = [e for e in best if e not in ends][:beam]
        if len(finished) == beam:
            break
    return finished, step + 1


@pytest.mark.parametrize("beam, alpha", [(2, 0.6), (3, 0.0), (3, 1.5)])
def test_beam_search_with_fairseq_s_stopping_rule_equals_a_numpy_reference(tiny_model, beam, alpha):
    model, sources = tiny_model
    max_length = 7
    tokens, scores = beam_search(model, tf.constant(sources), SPECIAL, max_length, beam, alpha, nbest=beam)
    for row, source in enumerate(sources):
        expected, _ = reference_beam_search(model, source, max_length, beam, alpha)
        got = [[t for t in hypothesis if t != SPECIAL.pad] for hypothesis in tokens[row].numpy().tolist()]
        assert got == [t for _, t in expected], (row, beam, alpha)
        np.testing.assert_allclose(scores[row].numpy(), [s for s, _ in expected], rtol=1e-4, atol=1e-4)


def steps_run(monkeypatch, *args, **kwargs):
    """``beam_search(*args, **kwargs)`` and the number of steps its loop ran."""
    import tfkd.decoding as decoding

    ran, real = [], tf.while_loop

    def counted(cond, body, loop_vars, **options):
        result = real(cond, body, loop_vars, **options)
        ran.append(int(result[0]))
        return result

    monkeypatch.setattr(decoding.tf, "while_loop", counted)
    out = beam_search(*args, **kwargs)
    monkeypatch.undo()
    return out, ran[0]


def test_a_sentence_is_done_with_beam_size_finished_hypotheses_and_exact_is_the_former_rule(tiny_model, monkeypatch):
    model, sources = tiny_model
    # a model that ends almost at once: the end token far likelier than the others
    early = tiny_transformer(8, VOCAB, seed=4)
    kernel, bias = model.output_projection.get_weights()
    early.output_projection.set_weights([kernel, bias + np.array([0, 0, 6.0, 0, 0, 0])])
    source = tf.constant(sources)
    (tokens, _), fairseq_steps = steps_run(monkeypatch, early, source, SPECIAL, 30, beam_size=3)
    (_, _), exact_steps = steps_run(monkeypatch, early, source, SPECIAL, 30, beam_size=3, early_stopping="exact")
    # the loop ran until its last sentence was done, as the reference counts it, not longer
    done_at = [reference_beam_search(early, row, 30, 3, 0.6)[1] for row in sources]
    assert fairseq_steps == max(done_at) <= 4 < exact_steps
    assert [t for t in tokens[0].numpy().tolist() if t != SPECIAL.pad] == [SPECIAL.eos]
    with pytest.raises(ValueError, match="early_stopping 'sooner': expected one of beam_size, exact"):
        beam_search(model, source, SPECIAL, 5, early_stopping="sooner")


def test_early_stopping_keys_evaluation_only_where_it_is_not_the_former_rule():
    from tfkd.tasks.translation import TranslationDecode

    assert TranslationDecode().key()["early_stopping"] == "beam_size"
    assert "early_stopping" not in TranslationDecode(early_stopping="exact").key()


def test_the_self_attention_caches_hold_only_the_positions_decoded_so_far(tiny_model):
    """A step attends over, and a beam reorders, the prefix decoded so far, not a buffer of
    ``max_length + 1`` positions; in a traced graph (as in an export) the grown caches give what
    the eager loop gives, and an XLA-compiled decoder (fixed shapes) allocates the buffer whole
    and gives the same."""
    model, sources = tiny_model
    hidden, mask = model.encode(tf.constant(sources))
    bos = tf.fill([2], SPECIAL.bos)
    _, state = model.decode_first(bos, hidden, mask, 30)
    assert [c.shape[2] for c in state["self"]] == [1]
    assert state["fixed"]["positions"].shape[0] == 31  # the position table covers max_length
    for index in (1, 2, 3):
        _, state = model.decode_next(tf.constant([4, 5]), index, hidden, mask, state)
        assert [c.shape[2] for c in state["self"]] == [index + 1]
    # static_shapes (what an XLA-compiled translator asks for): the whole buffer from the start
    _, fixed = model.decode_first(bos, hidden, mask, 30, grow=False)
    _, fixed = model.decode_next(tf.constant([4, 5]), 1, hidden, mask, fixed, grow=False)
    assert [c.shape[2] for c in fixed["self"]] == [31]
    for algorithm in (greedy_search, beam_search):
        eager = algorithm(model, tf.constant(sources), SPECIAL, 7, beam_size=3)
        traced = tf.function(lambda s, a=algorithm: a(model, s, SPECIAL, 7, beam_size=3), autograph=False)
        xla = tf.function(
            lambda s, a=algorithm: a(model, s, SPECIAL, 7, beam_size=3, static_shapes=True),
            jit_compile=True,
            autograph=False,
        )
        for tokens, scores in (traced(tf.constant(sources)), xla(tf.constant(sources))):
            np.testing.assert_array_equal(tokens.numpy(), eager[0].numpy())
            np.testing.assert_allclose(scores.numpy(), eager[1].numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    "algorithm, options",
    [(greedy_search, {}), (beam_search, {"beam_size": 3}), (beam_search, {"beam_size": 3, "early_stopping": "exact"})],
)
def test_a_sentence_that_is_done_leaves_the_batch_and_the_results_stay_those_of_the_full_batch(
    tiny_model, monkeypatch, algorithm, options
):
    """The model computes only the rows of sentences still decoding (what it is handed shrinks
    as sentences finish), and the results equal those of a decoder that keeps every row to the
    end (``static_shapes``: the XLA path), which the NumPy references above check."""
    model, sources = tiny_model
    # the first sentence ends at once (its source makes the end token likely), the others go on
    early = tiny_transformer(8, VOCAB, seed=4)
    kernel, bias = model.output_projection.get_weights()
    early.output_projection.set_weights([kernel * 8, bias + np.array([0, 0, 1.0, 0, 0, 0])])
    source = tf.constant(np.concatenate([sources, [[6, 6, 6], [3, 3, 3]]]), tf.int32)
    rows, decode_next = [], early.decode_next

    def counted(token_ids, *args, **kwargs):
        rows.append(int(tf.shape(token_ids)[0]))
        return decode_next(token_ids, *args, **kwargs)

    monkeypatch.setattr(early, "decode_next", counted)
    tokens, scores = algorithm(early, source, SPECIAL, 12, **options)
    shrinking = list(rows)
    rows.clear()
    full_tokens, full_scores = algorithm(early, source, SPECIAL, 12, static_shapes=True, **options)
    np.testing.assert_array_equal(tokens.numpy(), full_tokens.numpy())
    np.testing.assert_allclose(scores.numpy(), full_scores.numpy(), rtol=1e-6)
    width = options.get("beam_size", 1)
    assert set(rows) == {4 * width}  # every row to the end
    assert shrinking == sorted(shrinking, reverse=True) and shrinking[-1] < 4 * width, shrinking
    assert all(count % width == 0 for count in shrinking)  # whole sentences leave
    # the rows computed at each step are those of the sentences not yet done
    lengths = [(t != SPECIAL.pad).sum() for t in tokens.numpy().reshape(4, -1)]
    if algorithm is greedy_search:  # a sentence is done with its end token
        assert shrinking == [sum(n > step for n in lengths) for step in range(1, len(shrinking) + 1)]


def test_a_traced_decoder_writes_its_caches_without_an_op_xla_compiles_per_shape(tiny_model):
    """Keras writes a cache position with XlaDynamicUpdateSlice, which TensorFlow compiles with
    XLA for every new shape outside an XLA cluster (a growing cache: every step); the decoders'
    graphs write it with TensorFlow's own kernel, and give what the eager decoders give."""
    model, sources = tiny_model

    def ops_of(concrete):
        graph = concrete.graph.as_graph_def()
        return {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}

    for algorithm in (greedy_search, beam_search):
        traced = tf.function(lambda s, a=algorithm: a(model, s, SPECIAL, 7, beam_size=3), autograph=False)
        ops = ops_of(traced.get_concrete_function(tf.TensorSpec([None, 3], tf.int32)))
        assert "TensorStridedSliceUpdate" in ops and "XlaDynamicUpdateSlice" not in ops, algorithm
        eager = algorithm(model, tf.constant(sources), SPECIAL, 7, beam_size=3)
        np.testing.assert_array_equal(traced(tf.constant(sources))[0].numpy(), eager[0].numpy())
    # outside the decoders, Keras' own op is back
    from keras.src.backend.tensorflow import core

    assert core.slice_update.__module__ == "keras.src.backend.tensorflow.core"
