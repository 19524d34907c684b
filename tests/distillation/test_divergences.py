"""tfkd/distillation/divergences.py against NumPy references in float64: every divergence on
dense distributions and on a top-K teacher with and without its tail, values and gradients."""

import numpy as np
import pytest
import tensorflow as tf

from tfkd.distillation.divergences import DIVERGENCES, FLOOR, dense_divergence, divergence, top_k_divergence
from tfkd.training.losses import top_k_soft_cross_entropy


def kl(p, q):
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    return float(np.sum(np.where(p > 0, p * (np.log(np.maximum(p, 1e-300)) - np.log(q)), 0.0)))


def reference(name, p, q, beta=0.5, skew=0.1):
    """The divergence of two distributions over the same outcomes, as the papers write it."""
    floored = np.maximum(p, FLOOR)
    if name == "forward_kl" or (name == "jsd" and beta == 0):
        return kl(p, q)
    if name == "reverse_kl" or (name == "jsd" and beta == 1):
        return kl(q, floored)
    if name == "jsd":
        m = beta * p + (1 - beta) * q
        return beta * kl(p, m) + (1 - beta) * kl(q, m)
    if name == "tvd":
        return 0.5 * float(np.abs(p - q).sum())
    if name == "skew_kl":
        return kl(p, skew * p + (1 - skew) * q)
    return kl(q, np.maximum(skew * q + (1 - skew) * p, FLOOR))  # skew_reverse_kl


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


SETTINGS = [(name, {}) for name in DIVERGENCES] + [("jsd", {"beta": b}) for b in (0.0, 0.3, 1.0)]
SETTINGS += [("skew_kl", {"skew": 0.4}), ("skew_reverse_kl", {"skew": 0.4})]
IDS = [f"{name}{options or ''}" for name, options in SETTINGS]


def teacher_and_student(seed, rows=3, vocab=12):
    rng = np.random.default_rng(seed)
    return softmax(rng.normal(size=(rows, vocab)) * 2.0), rng.normal(size=(rows, vocab))


def top_k_reference(name, p, logits, ids, with_tail, options):
    """K + 1 outcomes (K ids and the rest) with the tail; both renormalised over K without it."""
    q = softmax(logits)
    p_k, q_k = p[ids], q[ids]
    if with_tail:
        return reference(name, np.append(p_k, 1 - p_k.sum()), np.append(q_k, 1 - q_k.sum()), **options)
    p_k = p_k / p_k.sum()
    if name == "forward_kl" or (name == "jsd" and options.get("beta") == 0.0):
        return kl(p_k, q_k)  # the student's own probabilities at the K ids: the soft target
    return reference(name, p_k, q_k / q_k.sum(), **options)


@pytest.mark.parametrize(("name", "options"), SETTINGS, ids=IDS)
def test_dense_divergences_equal_the_numpy_reference(name, options):
    p, logits = teacher_and_student(1)
    got = dense_divergence(name, p.astype(np.float32), logits.astype(np.float32), **options).numpy()
    expected = [reference(name, p[i], softmax(logits[i]), **options) for i in range(len(p))]
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-6)
    # equal distributions: every divergence is 0
    same = dense_divergence(name, softmax(logits).astype(np.float32), logits.astype(np.float32), **options)
    np.testing.assert_allclose(same.numpy(), 0.0, atol=2e-6)


@pytest.mark.parametrize("with_tail", [True, False], ids=["tail", "renormalised"])
@pytest.mark.parametrize(("name", "options"), SETTINGS, ids=IDS)
def test_top_k_divergences_equal_the_numpy_reference(name, options, with_tail):
    p, logits = teacher_and_student(2)
    ids = np.argsort(-p, axis=-1)[:, :4]
    probs = np.take_along_axis(p, ids, -1)
    tail = 1.0 - probs.sum(-1) if with_tail else None
    cached = probs if with_tail else probs / probs.sum(-1, keepdims=True)
    got = top_k_divergence(
        name, ids.astype(np.int32), cached.astype(np.float32), logits.astype(np.float32), tail=tail, **options
    ).numpy()
    expected = [top_k_reference(name, p[i], logits[i], ids[i], with_tail, options) for i in range(len(p))]
    np.testing.assert_allclose(got, expected, rtol=5e-4, atol=5e-6)


@pytest.mark.parametrize("with_tail", [True, False], ids=["tail", "renormalised"])
@pytest.mark.parametrize(("name", "options"), SETTINGS, ids=IDS)
def test_gradients_in_the_student_logits_equal_finite_differences_of_the_reference(name, options, with_tail):
    p, logits = teacher_and_student(3, rows=1, vocab=7)
    ids = np.argsort(-p, axis=-1)[:, :3]
    probs = np.take_along_axis(p, ids, -1)
    tail = 1.0 - probs.sum(-1) if with_tail else None
    variable = tf.Variable(logits.astype(np.float32))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(
            top_k_divergence(name, ids.astype(np.int32), probs.astype(np.float32), variable, tail=tail, **options)
        )
    got = tape.gradient(value, variable).numpy()[0]
    step, expected = 1e-5, np.zeros(logits.shape[1])
    for j in range(logits.shape[1]):
        up, down = logits[0].copy(), logits[0].copy()
        up[j] += step
        down[j] -= step
        expected[j] = (
            top_k_reference(name, p[0], up, ids[0], with_tail, options)
            - top_k_reference(name, p[0], down, ids[0], with_tail, options)
        ) / (2 * step)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-5)


def test_forward_kl_of_a_renormalised_cache_trains_as_the_soft_cross_entropy():
    """Without the tail, forward KL is the soft target tfkd always used, less the teacher's entropy."""
    p, logits = teacher_and_student(4)
    ids = np.argsort(-p, axis=-1)[:, :4].astype(np.int32)
    probs = np.take_along_axis(p, ids, -1).astype(np.float32)
    renormalised = probs / probs.sum(-1, keepdims=True)
    entropy = -(renormalised * np.log(renormalised)).sum(-1)
    variable = tf.Variable(logits.astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        forward = top_k_divergence("forward_kl", ids, probs, variable)
        soft = top_k_soft_cross_entropy(ids[None], probs[None], variable[None])[0]
    np.testing.assert_allclose(forward.numpy(), soft.numpy() - entropy, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        tape.gradient(forward, variable).numpy(), tape.gradient(soft, variable).numpy(), rtol=1e-5, atol=1e-7
    )


def test_padding_rows_give_zero_and_an_unknown_name_is_refused():
    _, logits = teacher_and_student(5, rows=2)
    ids, probs = np.zeros((2, 4), np.int32), np.zeros((2, 4), np.float32)
    for name in DIVERGENCES:
        for tail in (None, np.zeros(2, np.float32)):
            assert top_k_divergence(name, ids, probs, logits.astype(np.float32), tail=tail).numpy().tolist() == [0, 0]
    with pytest.raises(ValueError, match="divergence 'kl': expected one of forward_kl, reverse_kl, jsd"):
        divergence("kl", np.ones(2), np.zeros(2))


def test_jsd_at_one_half_is_symmetric_and_tvd_is_at_most_one():
    p, logits = teacher_and_student(6)
    q = softmax(logits)
    forward = dense_divergence("jsd", p.astype(np.float32), np.log(q).astype(np.float32), beta=0.5).numpy()
    swapped = dense_divergence("jsd", q.astype(np.float32), np.log(p).astype(np.float32), beta=0.5).numpy()
    np.testing.assert_allclose(forward, swapped, rtol=1e-5)
    assert np.all(forward <= np.log(2) + 1e-6)
    one_hot = np.eye(12, dtype=np.float32)[[0, 1, 2]]
    assert np.all(dense_divergence("tvd", one_hot, np.log(np.roll(one_hot, 1, -1) + 1e-9)).numpy() <= 1.0 + 1e-6)


@pytest.mark.parametrize(("name", "options"), SETTINGS, ids=IDS)
def test_the_divergence_setting_scales_a_renormalised_cache_by_its_tail(name, options):
    """A cache keeps its K renormalised and the tail beside them; ``Divergence(tail=True)``
    gives the K + 1-outcome reference on the teacher's own probabilities, and ignores the tail
    without ``tail`` (the K renormalised)."""
    from tfkd.distillation.divergences import Divergence

    p, logits = teacher_and_student(7)
    ids = np.argsort(-p, axis=-1)[:, :4]
    p_k = np.take_along_axis(p, ids, -1)
    stored, tail = p_k / p_k.sum(-1, keepdims=True), 1.0 - p_k.sum(-1)
    for with_tail in (True, False):
        setting = Divergence(name, tail=with_tail, **options)
        values = setting.top_k(tf.constant(ids), tf.constant(stored, tf.float32), tf.constant(logits, tf.float32), tail)
        expected = [top_k_reference(name, p[r], logits[r], ids[r], with_tail, options) for r in range(len(p))]
        np.testing.assert_allclose(np.asarray(values), expected, rtol=2e-4, atol=1e-6)


def test_the_divergence_setting_over_a_whole_distribution_is_the_dense_divergence():
    from tfkd.distillation.divergences import Divergence

    p, logits = teacher_and_student(8)
    values = Divergence("jsd", beta=0.3).dense(tf.constant(p, tf.float32), tf.constant(logits, tf.float32))
    expected = [reference("jsd", p[r], softmax(logits[r]), beta=0.3) for r in range(len(p))]
    np.testing.assert_allclose(np.asarray(values), expected, rtol=2e-4, atol=1e-6)


def test_the_spec_offers_exactly_the_divergences_the_module_computes():
    """``distill.divergence``'s choices are written out in the TensorFlow-free settings module;
    they must stay the module's family."""
    import typing

    from tfkd.distillation.settings import DivergenceSettings

    assert typing.get_args(DivergenceSettings.model_fields["divergence"].annotation) == DIVERGENCES
