"""Sampling one sequence per sentence (tfkd.decoding.sampling) against NumPy: the tempered
nucleus distribution, the frequencies of drawn tokens, the greedy limit, reproducibility from
the seed, and samples that do not depend on which sentences have ended."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_transformer

from tfkd.data import SpecialIds
from tfkd.decoding import greedy_search
from tfkd.decoding.sampling import sample_search, sampling_log_probs

SPECIAL = SpecialIds(pad=0, bos=1, eos=2, unk=3)
VOCAB = 9


@pytest.fixture(scope="module")
def tiny_model():
    model = tiny_transformer(8, VOCAB, seed=5)
    kernel, bias = model.output_projection.get_weights()
    model.output_projection.set_weights([kernel * 4, bias])
    return model, np.array([[4, 5, 6], [7, 3, 5]], np.int32)


def reference_sampling_probs(log_probs, temperature, top_p):
    """NumPy: softmax(log_probs / T), its smallest most-likely set of mass >= top_p, renormalised."""
    scaled = log_probs / temperature
    probs = np.exp(scaled - scaled.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = np.zeros_like(probs)
    for r, row in enumerate(probs):
        order = np.argsort(-row)
        before = np.cumsum(row[order]) - row[order]
        kept = order[before < top_p]
        out[r, kept] = row[kept] / row[kept].sum()
    return out


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.5, 1.0), (2.0, 0.9), (1.0, 0.5), (0.7, 0.01)])
def test_the_sampling_distribution_is_the_tempered_nucleus(temperature, top_p):
    log_probs = np.log(np.random.default_rng(0).dirichlet(np.ones(7) * 0.7, size=5)).astype(np.float32)
    got = np.exp(sampling_log_probs(tf.constant(log_probs), temperature, top_p).numpy())
    got[got < 1e-30] = 0.0
    np.testing.assert_allclose(
        got, reference_sampling_probs(log_probs.astype(np.float64), temperature, top_p), atol=1e-5
    )


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (1.5, 0.8)])
def test_drawn_first_tokens_follow_the_models_tempered_nucleus(tiny_model, temperature, top_p):
    model, sources = tiny_model
    copies = np.repeat(sources[:1], 4000, axis=0)
    tokens, _ = sample_search(model, tf.constant(copies), SPECIAL, 1, temperature=temperature, top_p=top_p, seed=(3, 4))
    hidden, mask = model.encode(sources[:1])
    logits = model.decode(np.array([[SPECIAL.bos]], np.int32), hidden, mask).numpy()[0, 0].astype(np.float64)
    logits[[SPECIAL.pad, SPECIAL.bos]] = -np.inf
    log_probs = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
    expected = reference_sampling_probs(log_probs[None], temperature, top_p)[0]
    counts = np.bincount(tokens.numpy()[:, 0], minlength=VOCAB) / len(copies)
    assert not counts[expected == 0].any()  # outside the nucleus (and pad, bos): never drawn
    sigma = np.sqrt(expected * (1 - expected) / len(copies))
    assert np.all(np.abs(counts - expected) <= 4 * sigma + 1e-9), (counts, expected)


def test_a_near_zero_temperature_is_greedy_search(tiny_model):
    model, sources = tiny_model
    greedy, greedy_scores = greedy_search(model, tf.constant(sources), SPECIAL, 6)
    drawn, scores = sample_search(model, tf.constant(sources), SPECIAL, 6, temperature=1e-4, seed=(1, 2))
    np.testing.assert_array_equal(drawn.numpy(), greedy.numpy())
    np.testing.assert_allclose(scores.numpy(), greedy_scores.numpy(), rtol=1e-6)


def test_the_seed_decides_the_samples(tiny_model):
    model, sources = tiny_model
    many = tf.constant(np.repeat(sources, 8, axis=0))
    first, _ = sample_search(model, many, SPECIAL, 6, temperature=2.0, seed=(7, 0))
    again, _ = sample_search(model, many, SPECIAL, 6, temperature=2.0, seed=(7, 0))
    other, _ = sample_search(model, many, SPECIAL, 6, temperature=2.0, seed=(8, 0))
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert (first.numpy() != other.numpy()).any()


def test_a_sentence_s_sample_does_not_depend_on_others_having_ended(tiny_model):
    """Ended sentences leave the batch; with static shapes they stay: the samples are the same."""
    model, sources = tiny_model
    many = tf.constant(np.repeat(sources, 6, axis=0))
    shrinking, scores = sample_search(model, many, SPECIAL, 7, temperature=1.5, seed=(5, 9))
    kept, kept_scores = sample_search(model, many, SPECIAL, 7, temperature=1.5, seed=(5, 9), static_shapes=True)
    lengths = (shrinking.numpy() != SPECIAL.pad).sum(1)
    assert lengths.min() < lengths.max()  # some sentences did end before others
    np.testing.assert_array_equal(shrinking.numpy(), kept.numpy())
    np.testing.assert_allclose(scores.numpy(), kept_scores.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("setting, message", [({"temperature": 0.0}, "temperature above 0"), ({"top_p": 0.0}, "top_p")])
def test_settings_out_of_range_are_refused(tiny_model, setting, message):
    model, sources = tiny_model
    with pytest.raises(ValueError, match=message):
        sample_search(model, tf.constant(sources), SPECIAL, 3, **setting)
