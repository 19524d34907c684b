"""The teachers' combination against a dense NumPy reference: each teacher's top K of
softmax(logits / T_i), renormalised, made a full distribution over the vocabulary; the mixture
sum_i w_i q_i and the normalised product prod_i q_i^w_i; and the student's soft-target loss on
the combined cache equal to the cross-entropy against the dense reference."""

import numpy as np
import pytest
import tensorflow as tf

from tfkd.methods.ensemble.combine import mixture, product
from tfkd.teachers.topk_cache import top_k_distribution
from tfkd.training.losses import top_k_soft_cross_entropy

V, T = 12, 5


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def dense_top_k(logits, k, temperature):
    """The reference of a cached teacher: top K of softmax(logits / T), renormalised, over V."""
    q = softmax(logits / temperature)
    out = np.zeros_like(q)
    for t in range(q.shape[0]):
        top = np.argsort(-q[t])[:k]
        out[t, top] = q[t, top] / q[t, top].sum()
    return out


def cached(logits, k, temperature):
    ids, probs = top_k_distribution(tf.constant(logits[None], tf.float32), k, temperature)
    return ids.numpy()[0], probs.numpy()[0].astype(np.float16).astype(np.float32)  # the cache's float16


def to_dense(ids, probs):
    out = np.zeros((ids.shape[0], V))
    for t in range(ids.shape[0]):
        np.add.at(out[t], ids[t], probs[t])
    return out


@pytest.fixture
def teachers():
    rng = np.random.default_rng(3)
    settings = [(4, 1.0), (3, 2.0), (6, 0.5)]  # (K, T) per teacher
    logits = [rng.normal(0, 2, (T, V)) for _ in settings]
    return logits, settings


@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [0.2, 0.5, 0.3], [3.0, 1.0, 0.0001]])
def test_the_mixture_is_the_weighted_sum_of_the_teachers_top_k_distributions(teachers, weights):
    logits, settings = teachers
    combined_ids, combined = mixture([cached(x, k, t) for x, (k, t) in zip(logits, settings)], weights)
    w = np.asarray(weights) / np.sum(weights)
    reference = sum(wi * dense_top_k(x, k, t) for wi, x, (k, t) in zip(w, logits, settings))
    assert combined_ids.shape == (T, 4 + 3 + 6)
    np.testing.assert_allclose(to_dense(combined_ids, combined), reference, atol=2e-3)
    np.testing.assert_allclose(combined.sum(-1), 1.0, atol=1e-6)


def test_the_product_is_the_normalised_weighted_product_over_the_union(teachers):
    logits, settings = teachers
    weights = [0.5, 0.3, 0.2]
    entries = [cached(x, k, t) for x, (k, t) in zip(logits, settings)]
    combined_ids, combined = product(entries, weights)
    # reference: over the union of kept tokens, q_i(v) or (outside teacher i's top K) the
    # smallest probability it kept, raised to w_i, multiplied, normalised
    dense = [dense_top_k(x, k, t) for x, (k, t) in zip(logits, settings)]
    reference = np.zeros((T, V))
    for t in range(T):
        union = sorted(set().union(*(np.flatnonzero(d[t]) for d in dense)))
        for v in union:
            kept_or_floor = [d[t, v] if d[t, v] > 0 else d[t][d[t] > 0].min() for d in dense]
            reference[t, v] = np.prod([q**w for q, w in zip(kept_or_floor, weights)])
        reference[t] /= reference[t].sum()
    np.testing.assert_allclose(to_dense(combined_ids, combined), reference, atol=3e-3)
    # a token several teachers keep holds its mass once
    for t in range(T):
        held = combined_ids[t][combined[t] > 0]
        assert len(held) == len(set(held.tolist()))


def test_a_teacher_without_a_prediction_at_a_position_is_left_out_there():
    a = (np.array([[1, 2], [3, 4]]), np.array([[0.75, 0.25], [0.5, 0.5]]))
    b = (np.array([[5, 6], [3, 7]]), np.array([[0.0, 0.0], [0.5, 0.5]]))  # nothing at position 0
    for combine in (mixture, product):
        ids, probs = combine([a, b], [1.0, 1.0])
        np.testing.assert_allclose(to_dense(ids, probs)[0], to_dense(a[0][:1], a[1][:1])[0], atol=1e-6)
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    # product: token 3 is kept by both at position 1 (0.5 each); 4 and 7 by one, the other's floor 0.5
    ids, probs = product([a, b], [1.0, 1.0])
    dense = to_dense(ids, probs)[1]
    np.testing.assert_allclose(dense[[3, 4, 7]], [1 / 3, 1 / 3, 1 / 3], atol=1e-6)


def test_the_students_loss_on_the_combined_cache_is_the_cross_entropy_against_the_dense_mixture(teachers):
    logits, settings = teachers
    weights = [0.6, 0.1, 0.3]
    ids, probs = mixture([cached(x, k, t) for x, (k, t) in zip(logits, settings)], weights)
    student = np.random.default_rng(7).normal(0, 1, (T, V))
    loss = top_k_soft_cross_entropy(ids[None], probs[None], tf.constant(student[None], tf.float32))
    reference = sum(w * dense_top_k(x, k, t) for w, x, (k, t) in zip(weights, logits, settings))
    expected = -(reference * np.log(softmax(student))).sum(-1)
    np.testing.assert_allclose(np.asarray(loss)[0], expected, rtol=2e-3)
