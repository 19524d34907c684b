"""Beam search against exhaustive search on a tiny model, and greedy = beam of 1."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfkd.data import SpecialIds
from tfkd.decoding import beam_search, gnmt_length_penalty, greedy_search
from tfkd.models import TransformerSeq2Seq

SPECIAL = SpecialIds(pad=0, bos=1, eos=2, unk=3)
VOCAB = 6  # pad, bos, eos, and three real tokens


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    keras.utils.set_random_seed(4)
    model = TransformerSeq2Seq(8, VOCAB, encoder_layers=1, decoder_layers=1, hidden_dim=8,
                               intermediate_dim=16, num_heads=2, dropout=0.0, tie_embeddings=False)
    source = np.array([[4, 5, 6], [7, 3, 0]], np.int32)
    model({"source_ids": source, "decoder_ids": np.ones((2, 1), np.int32)})
    # spread the output distribution so different lengths genuinely compete
    kernel, bias = model.output_projection.get_weights()
    model.output_projection.set_weights([kernel * 8, bias + np.array([0, 0, 1.5, 0, 0, 0])])
    return model, source


def sequence_log_prob(model, source, prefix_tokens):
    hidden, mask = model.encode(source[None])
    decoder = np.array([[SPECIAL.bos] + list(prefix_tokens)], np.int32)
    logits = model.decode(decoder[:, :-1], hidden, mask).numpy()[0].astype("float64")
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    # the decoders never emit pad or bos
    log_probs[:, [SPECIAL.pad, SPECIAL.bos]] = -np.inf
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    return sum(log_probs[t, tok] for t, tok in enumerate(prefix_tokens))


def exhaustive_best(model, source, max_length, alpha):
    """Score every hypothesis: sequences ending in EOS within max_length, or of max_length."""
    emit = [SPECIAL.eos, 3, 4, 5]
    best = (-np.inf, None)
    for length in range(1, max_length + 1):
        for body in itertools.product([3, 4, 5], repeat=length - 1):
            for last in emit:
                tokens = list(body) + [last]
                if last != SPECIAL.eos and length != max_length:
                    continue
                score = sequence_log_prob(model, source, tokens) / ((5 + length) / 6) ** alpha
                if score > best[0]:
                    best = (score, tokens)
    del emit
    return best


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_search_equals_exhaustive_search(tiny_model, alpha):
    model, sources = tiny_model
    max_length = 4
    # a beam wide enough to hold every hypothesis is exact
    tokens, scores = beam_search(model, tf.constant(sources), SPECIAL, max_length, beam_size=27,
                                 length_penalty=alpha)
    for row, source in enumerate(sources):
        score, expected = exhaustive_best(model, source, max_length, alpha)
        got = [t for t in tokens[row].numpy().tolist() if t != SPECIAL.pad]
        assert got == expected, (alpha, row)
        np.testing.assert_allclose(scores[row].numpy(), score, rtol=1e-4, atol=1e-4)


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
