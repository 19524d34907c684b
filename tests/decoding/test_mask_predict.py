"""Mask-Predict on fake models with hand-designed outputs: every iteration's tokens and
re-masked positions, the decay schedule, early stopping, length candidates, graph mode,
SavedModel export and the Translator's options."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfkd.data import SpecialIds
from tfkd.decoding.mask_predict import (
    mask_predict,
    mask_predict_trace,
    masks_per_iteration,
    num_masks,
)

# the reserved tokens in tfkd's vocabularies: [PAD] [UNK] [CLS] [SEP] [MASK], then words
SPECIAL = SpecialIds(pad=0, bos=2, eos=3, unk=1)
MASK = 4
WORDS = [5, 6, 7, 8]
VOCAB = 9
BANNED = [SPECIAL.pad, SPECIAL.bos, SPECIAL.eos, MASK]


class TableModel:
    """A fake Mask-Predict student with fixed outputs.

    Sentence ``s`` is the source ``[[s, ...]]``. Its length logits are ``lengths[s]``; the
    decoder's logits at position ``i`` are ``base[s, i]``, plus ``bonus`` on the successor
    ``5 -> 6 -> 7 -> 8 -> 5`` of the token left of ``i`` when that is a word (not [MASK]), so
    what is re-masked changes what is predicted. Counts its decoder passes (in eager mode).
    """

    mask_id = MASK

    def __init__(self, base, lengths, bonus=4.0):
        self.base = tf.constant(base, tf.float32)  # [sentences, positions, VOCAB]
        self.lengths = tf.constant(lengths, tf.float32)  # [sentences, max_target_length + 1]
        self.bonus = bonus
        self.decode_calls = 0

    def encode(self, source_ids, training=False):
        return tf.cast(source_ids[:, :, tf.newaxis], tf.float32), tf.not_equal(source_ids, SPECIAL.pad)

    def length_logits(self, hidden, padding_mask):
        return tf.gather(self.lengths, tf.cast(hidden[:, 0, 0], tf.int32))

    def decode(self, decoder_ids, hidden, padding_mask, training=False):
        self.decode_calls += 1
        base = tf.gather(self.base, tf.cast(hidden[:, 0, 0], tf.int32))[:, : tf.shape(decoder_ids)[1]]
        left = tf.pad(decoder_ids[:, :-1], [[0, 0], [1, 0]], constant_values=SPECIAL.pad)
        successor = WORDS[0] + (left - WORDS[0] + 1) % len(WORDS)
        is_word = tf.cast(left >= WORDS[0], tf.float32)[..., tf.newaxis]
        return base + self.bonus * is_word * tf.one_hot(successor, VOCAB)


class PositionsTableModel(TableModel):
    """:class:`TableModel` whose decoder returns logits at given ``positions`` only (as AB-Net's
    output layer does), recording how many positions each pass asked for (in eager mode)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked = []

    def decode(self, decoder_ids, hidden, padding_mask, training=False, positions=None):
        logits = super().decode(decoder_ids, hidden, padding_mask, training)
        if positions is None:
            self.asked.append(None)
            return logits
        self.asked.append(positions.shape[1])
        return tf.gather(logits, positions, batch_dims=1)


def sources(*sentences):
    return tf.constant([[s, 9, 9] for s in sentences], tf.int32)


def length_logits(preferred, max_target_length=8):
    """Logits over lengths ``0..max_target_length``: ``preferred`` maps length -> logit; length
    0 gets the highest logit of all, which must never be chosen."""
    logits = np.full(max_target_length + 1, -5.0, np.float32)
    for length, logit in preferred.items():
        logits[length] = logit
    logits[0] = 50.0
    return logits


def hand_base():
    """Positions 0..3: the best word without context (others and the specials at logit 0)."""
    base = np.zeros((1, 8, VOCAB), np.float32)
    for position, (token, logit) in enumerate([(5, 3.0), (6, 1.0), (7, 2.0), (5, 0.5)]):
        base[0, position, token] = logit
    return base


def log_p(winner, others=()):
    """log-probability of a token with logit ``winner`` when all other VOCAB - 1 - len(others)
    logits are 0 and ``others`` lists the remaining non-zero ones."""
    rest = (VOCAB - 1 - len(others)) + sum(math.exp(o) for o in others)
    return winner - math.log(math.exp(winner) + rest)


# ----------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize("length", [1, 2, 3, 7, 10, 33])
@pytest.mark.parametrize("iterations", [1, 2, 4, 10])
def test_num_masks_is_the_linear_decay(length, iterations):
    expected = [math.floor(length * (iterations - t) / iterations) for t in range(1, iterations)]
    assert masks_per_iteration(length, iterations) == expected
    assert [num_masks(length, t, iterations) for t in range(1, iterations)] == expected
    # and as tensors, the way the decoder uses it
    got = num_masks(tf.constant([length]), tf.range(1, iterations)[:, tf.newaxis], iterations)
    assert got.numpy()[:, 0].tolist() == expected


def test_num_masks_examples():
    # Ghazvininejad et al.: T = 10, L = 10 re-masks 9, 8, ..., 1
    assert masks_per_iteration(10, 10) == [9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert masks_per_iteration(4, 3) == [2, 1]
    assert masks_per_iteration(2, 10) == [1, 1, 1, 1, 1, 0, 0, 0, 0]


# ----------------------------------------------------------------------------- hand-computed runs


def test_every_iteration_by_hand():
    """L = 4, T = 3: predict all, re-mask the 2 then 1 least probable tokens.

    Pass 1 (all [MASK]): 5 6 7 5 with probabilities p0 > p2 > p1 > p3.
    Pass 2 re-masks {3, 1}: input 5 _ 7 _ -> position 1 follows 5 (6 again, now sure),
    position 3 follows 7 (8): 5 6 7 8.
    Pass 3 re-masks the least probable, position 2 (from pass 1): input 5 6 _ 8 -> 7.
    """
    model = TableModel(hand_base(), [length_logits({4: 1.0})])
    trace = mask_predict_trace(model, sources(0), SPECIAL, max_length=8, length_candidates=1, iterations=3)
    assert int(trace["iterations"]) == 3
    tokens = trace["tokens"].numpy()[:, 0, 0]
    masked = trace["masked"].numpy()[:, 0, 0]
    assert tokens.tolist() == [[5, 6, 7, 5], [5, 6, 7, 8], [5, 6, 7, 8]]
    assert masked.tolist() == [[True] * 4, [False, True, False, True], [False, False, True, False]]
    assert masked.sum(axis=1).tolist() == [4] + masks_per_iteration(4, 3)

    first = [log_p(3.0), log_p(1.0), log_p(2.0), log_p(0.5)]
    second = [first[0], log_p(5.0), first[2], log_p(4.0, others=[0.5])]
    third = [first[0], second[1], log_p(6.0), second[3]]
    log_probs = trace["log_probs"].numpy()[:, 0, 0]
    np.testing.assert_allclose(log_probs, [first, second, third], rtol=1e-5)

    token_ids, scores = mask_predict(model, sources(0), SPECIAL, 8, length_candidates=1, iterations=3)
    assert token_ids.numpy().tolist() == [[5, 6, 7, 8]]
    np.testing.assert_allclose(scores.numpy(), [np.mean(third)], rtol=1e-5)


def test_unchanged_output_stops_early():
    """T = 4: pass 2 re-masks 3 tokens (positions 3, 1, 2) and predicts 5 6 7 5 again: stop."""
    model = TableModel(hand_base(), [length_logits({4: 1.0})])
    trace = mask_predict_trace(model, sources(0), SPECIAL, 8, length_candidates=1, iterations=4)
    assert int(trace["iterations"]) == 2
    assert trace["masked"].numpy()[1, 0, 0].tolist() == [False, True, True, True]
    assert trace["tokens"].numpy()[:, 0, 0].tolist() == [[5, 6, 7, 5]] * 2
    model.decode_calls = 0
    token_ids, _ = mask_predict(model, sources(0), SPECIAL, 8, length_candidates=1, iterations=4)
    assert model.decode_calls == 2
    assert token_ids.numpy().tolist() == [[5, 6, 7, 5]]


def test_a_model_that_ignores_its_input_stops_after_two_passes():
    base = np.random.default_rng(0).normal(size=(2, 8, VOCAB)).astype(np.float32)
    model = TableModel(base, [length_logits({6: 1.0, 5: 0.5})] * 2, bonus=0.0)
    trace = mask_predict_trace(model, sources(0, 1), SPECIAL, 8, length_candidates=2, iterations=10)
    assert int(trace["iterations"]) == 2
    assert trace["active"].numpy().all()
    model.decode_calls = 0
    mask_predict(model, sources(0, 1), SPECIAL, 8, length_candidates=2, iterations=10)
    assert model.decode_calls == 2


def test_nothing_left_to_mask_stops_a_candidate():
    """T = 10: a length-1 candidate has floor(1 * 9 / 10) = 0 tokens to re-mask after pass 1,
    a length-2 one has none from t = 6 (floor(2 * 4 / 10) = 0), while longer ones go on."""
    base = np.random.default_rng(1).normal(scale=3.0, size=(1, 8, VOCAB)).astype(np.float32)
    model = TableModel(base, [length_logits({1: 3.0, 2: 2.0, 7: 1.0})], bonus=6.0)
    trace = mask_predict_trace(model, sources(0), SPECIAL, 8, length_candidates=3, iterations=10)
    assert trace["lengths"].numpy().tolist() == [[1, 2, 7]]
    active = trace["active"].numpy()[:, 0]
    assert active[:, 0].tolist() == [True] + [False] * (len(active) - 1)
    masked = trace["masked"].numpy()[:, 0]
    # a running candidate re-masks exactly num_masks tokens, a stopped one none
    for i in range(1, len(active)):
        for c, length in enumerate([1, 2, 7]):
            expected = num_masks(length, i, 10) if active[i, c] else 0
            assert masked[i, c].sum() == expected
    assert not active[6:, 1].any()


# ----------------------------------------------------------------------------- length candidates


def test_kept_candidate_has_the_best_average_log_prob_not_the_likeliest_length():
    """Lengths by logit: 0 (never), 5 (beyond max_length 4), 3, 1, 2. One pass: length 1 keeps
    only the sure first token, so it wins on average log-probability."""
    model = TableModel(hand_base(), [length_logits({5: 9.0, 3: 2.0, 1: 1.0, 2: 0.5, 4: -1.0})])
    trace = mask_predict_trace(model, sources(0), SPECIAL, 4, length_candidates=3, iterations=1)
    assert trace["lengths"].numpy().tolist() == [[3, 1, 2]]
    first = [log_p(3.0), log_p(1.0), log_p(2.0)]
    np.testing.assert_allclose(
        trace["candidate_scores"].numpy()[0], [np.mean(first), first[0], np.mean(first[:2])], rtol=1e-5
    )
    assert int(trace["best"][0]) == 1
    token_ids, scores = mask_predict(model, sources(0), SPECIAL, 4, length_candidates=3, iterations=1)
    assert token_ids.numpy().tolist() == [[5]]
    np.testing.assert_allclose(scores.numpy(), [first[0]], rtol=1e-5)


def test_nbest_ranks_the_length_candidates_by_average_log_prob():
    """The same table as above: the candidates of lengths 3, 1, 2 rank 1, 3, 2 by average."""
    model = TableModel(hand_base(), [length_logits({5: 9.0, 3: 2.0, 1: 1.0, 2: 0.5, 4: -1.0})])
    token_ids, scores = mask_predict(model, sources(0), SPECIAL, 4, length_candidates=3, iterations=1, nbest=3)
    first = [log_p(3.0), log_p(1.0), log_p(2.0)]
    np.testing.assert_allclose(scores.numpy(), [[first[0], np.mean(first), np.mean(first[:2])]], rtol=1e-5)
    assert token_ids.numpy().tolist() == [[[5, 0, 0], [5, 6, 7], [5, 6, 0]]]
    # more than the candidates kept is refused; invalid candidates (max_length 1) rank last
    with pytest.raises(
        ValueError, match="mask_predict with length_candidates 3 keeps 3 hypotheses per sentence; nbest 4 is not"
    ):
        mask_predict(model, sources(0), SPECIAL, 4, length_candidates=3, iterations=1, nbest=4)
    _, scores = mask_predict(model, sources(0), SPECIAL, 1, length_candidates=3, iterations=1, nbest=3)
    assert scores.numpy()[0, 0] > -1e8 and (scores.numpy()[0, 1:] <= -1e8).all()


def test_lengths_beyond_max_length_are_never_used():
    model = TableModel(hand_base(), [length_logits({8: 9.0, 7: 8.0, 6: 7.0, 2: 1.0, 1: 0.0})])
    # only lengths 1 and 2 are allowed: the other two candidates are invalid, never kept
    trace = mask_predict_trace(model, sources(0), SPECIAL, 2, length_candidates=4, iterations=3)
    assert trace["valid"].numpy().tolist() == [[True, True, False, False]]
    assert trace["lengths"].numpy()[0, :2].tolist() == [2, 1]
    assert trace["tokens"].shape[-1] <= 2
    token_ids, _ = mask_predict(model, sources(0), SPECIAL, tf.constant(2), length_candidates=4, iterations=3)
    assert token_ids.shape[1] <= 2


def test_more_candidates_than_the_length_table():
    model = TableModel(hand_base()[:, :3], [length_logits({2: 1.0}, max_target_length=2)])
    token_ids, scores = mask_predict(model, sources(0), SPECIAL, 10, length_candidates=5, iterations=2)
    assert token_ids.shape[1] in (1, 2) and np.isfinite(scores.numpy()).all()


# ----------------------------------------------------------------------------- a NumPy reference


def reference(model, sentence, max_length, candidates, iterations):
    """Mask-Predict one sentence, one candidate at a time, in NumPy (float64)."""
    table = model.lengths.numpy()[sentence].astype(np.float64)
    allowed = [n for n in np.argsort(-table, kind="stable") if 1 <= n <= max_length][:candidates]

    def predict(ids):
        logits = model.decode(tf.constant([ids], tf.int32), *model.encode(sources(sentence))).numpy()[0]
        logits = logits.astype(np.float64)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        log_probs[:, BANNED] = -np.inf
        return log_probs.argmax(-1), log_probs.max(-1)

    runs = []
    for length in allowed:
        tokens, log_probs = predict([MASK] * length)
        history, masks = [tokens.copy()], [np.ones(length, bool)]
        for t in range(1, iterations):
            n = length * (iterations - t) // iterations
            if n == 0:
                break
            chosen = np.argsort(log_probs, kind="stable")[:n]
            ids = tokens.copy()
            ids[chosen] = MASK
            new_tokens, new_log_probs = predict(ids)
            changed = (new_tokens[chosen] != tokens[chosen]).any()
            tokens, log_probs = tokens.copy(), log_probs.copy()
            tokens[chosen], log_probs[chosen] = new_tokens[chosen], new_log_probs[chosen]
            history.append(tokens.copy())
            masks.append(np.isin(np.arange(length), chosen))
            if not changed:
                break
        runs.append({"length": length, "history": history, "masks": masks, "score": log_probs.mean()})
    return runs


@pytest.mark.parametrize("model_class", [TableModel, PositionsTableModel])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_a_numpy_reference_iteration_by_iteration(seed, model_class):
    """Also with a decoder that predicts only the positions asked for: passes after the first
    ask for the re-masked ones (as many as the most a candidate re-masks), not every position."""
    rng = np.random.default_rng(seed)
    sentences, max_length, candidates, iterations = 4, 7, 3, 6
    base = rng.normal(scale=2.0, size=(sentences, 8, VOCAB)).astype(np.float32)
    lengths = rng.normal(size=(sentences, 9)).astype(np.float32)
    model = model_class(base, lengths, bonus=2.5)
    trace = mask_predict_trace(model, sources(*range(sentences)), SPECIAL, max_length, candidates, iterations)
    token_ids, scores = mask_predict(model, sources(*range(sentences)), SPECIAL, max_length, candidates, iterations)
    passes = int(trace["iterations"])
    longest = 0
    for s in range(sentences):
        runs = reference(model, s, max_length, candidates, iterations)
        assert trace["lengths"].numpy()[s].tolist() == [r["length"] for r in runs]
        for c, run in enumerate(runs):
            length, history = run["length"], run["history"]
            for i in range(passes):
                got = trace["tokens"].numpy()[i, s, c]
                assert got[:length].tolist() == history[min(i, len(history) - 1)].tolist(), (s, c, i)
                assert (got[length:] == SPECIAL.pad).all()
                assert bool(trace["active"][i, s, c]) == (i < len(history))
                if i < len(history):
                    assert trace["masked"].numpy()[i, s, c, :length].tolist() == run["masks"][i].tolist()
            # nothing banned is emitted
            assert not np.isin(history[-1], BANNED).any()
        longest = max(longest, max(len(r["history"]) for r in runs))
        best = int(np.argmax([r["score"] for r in runs]))
        expected = runs[best]["history"][-1].tolist()
        assert token_ids.numpy()[s, : len(expected)].tolist() == expected
        assert (token_ids.numpy()[s, len(expected) :] == SPECIAL.pad).all()
        np.testing.assert_allclose(scores.numpy()[s], runs[best]["score"], rtol=1e-4)
    assert passes == longest
    # the seeds give runs that re-mask and change tokens at least once
    assert passes >= 3
    if model_class is PositionsTableModel:
        width = trace["tokens"].shape[-1]
        for asked in (model.asked[:passes], model.asked[passes : 2 * passes]):  # the trace's run, mask_predict's
            assert asked[0] is None  # the first pass predicts every position
            # then as many positions as the most tokens any running candidate re-masks
            most = [int(trace["masked"].numpy()[i].sum(-1).max()) for i in range(1, passes)]
            assert asked[1:] == most
            assert max(most) < width


# ----------------------------------------------------------------------------- graph and export


@pytest.fixture(scope="module")
def random_model():
    rng = np.random.default_rng(5)
    base = rng.normal(scale=2.0, size=(4, 8, VOCAB)).astype(np.float32)
    return TableModel(base, rng.normal(size=(4, 9)).astype(np.float32), bonus=2.5)


def test_graph_mode_with_dynamic_shapes_equals_eager(random_model):
    signature = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([], tf.int32)]

    @tf.function(input_signature=signature, autograph=False)
    def decode(source_ids, max_length):
        return mask_predict(random_model, source_ids, SPECIAL, max_length, length_candidates=3, iterations=5)

    @tf.function(input_signature=signature, autograph=False)
    def trace(source_ids, max_length):
        return mask_predict_trace(random_model, source_ids, SPECIAL, max_length, length_candidates=3, iterations=5)

    for batch, max_length in [((0, 1, 2, 3), 7), ((2, 3), 5), ((1,), 3)]:
        eager = mask_predict(random_model, sources(*batch), SPECIAL, max_length, length_candidates=3, iterations=5)
        graph = decode(sources(*batch), tf.constant(max_length))
        np.testing.assert_array_equal(graph[0].numpy(), eager[0].numpy())
        np.testing.assert_allclose(graph[1].numpy(), eager[1].numpy(), rtol=1e-6)
        eager_trace = mask_predict_trace(random_model, sources(*batch), SPECIAL, max_length, 3, 5)
        graph_trace = trace(sources(*batch), tf.constant(max_length))
        for key in ("tokens", "masked", "active", "lengths", "iterations"):
            np.testing.assert_array_equal(graph_trace[key].numpy(), eager_trace[key].numpy(), err_msg=key)
    assert decode.experimental_get_tracing_count() == 1  # one graph for every shape


def test_exports_in_a_saved_model(random_model, tmp_path):
    module = tf.Module()
    module.decode = tf.function(
        lambda source_ids: mask_predict(random_model, source_ids, SPECIAL, 6, length_candidates=2, iterations=4),
        input_signature=[tf.TensorSpec([None, None], tf.int32)],
        autograph=False,
    )
    tf.saved_model.save(module, str(tmp_path / "model"))
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    expected = mask_predict(random_model, sources(0, 3), SPECIAL, 6, length_candidates=2, iterations=4)
    got = loaded.decode(sources(0, 3))
    np.testing.assert_array_equal(got[0].numpy(), expected[0].numpy())
    np.testing.assert_allclose(got[1].numpy(), expected[1].numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------- the Translator


def test_translator_passes_length_candidates_and_iterations():
    import keras_hub

    from tfkd import registry
    from tfkd.tasks.translation import TranslationDecode
    from tfkd.tasks.translation.inference import Translator

    assert registry.lookup("decoder", "mask_predict") is mask_predict
    # ids as in the fake model: [PAD] [UNK] [CLS] [SEP] [MASK] then words; "a" is sentence 5
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d"]
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocabulary, oov_token="[UNK]")
    base = np.zeros((6, 8, VOCAB), np.float32)
    base[5] = hand_base()[0]
    model = TableModel(base, [length_logits({4: 1.0})] * 6)

    def translate(**options):
        spec = TranslationDecode(algorithm="mask_predict", max_length_a=0.0, max_length_b=8, **options)
        result = Translator(model, tokenizer, tokenizer, spec, max_tokens=16).translate(tf.constant(["a"]))
        return result["translations"].numpy()[0].decode()

    # the hand-computed run: "a b c a" after one pass, "a b c d" after three
    assert translate(iterations=1, length_candidates=1) == "a b c a"
    assert translate(iterations=3, length_candidates=1) == "a b c d"
    # with more length candidates a shorter, surer candidate wins
    model.lengths = tf.constant([length_logits({4: 2.0, 1: 1.0})] * 6)
    assert translate(iterations=1, length_candidates=1) == "a b c a"
    assert translate(iterations=1, length_candidates=2) == "a"
