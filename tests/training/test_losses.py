"""Token-level losses against NumPy references."""

import numpy as np
import pytest

from tfkd.training.losses import label_smoothed_cross_entropy


def numpy_label_smoothed(targets, logits, eps):
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    vocab = logits.shape[-1]
    smoothed = np.full(logits.shape, eps / vocab)
    np.put_along_axis(smoothed, targets[..., None], 1 - eps + eps / vocab, axis=-1)
    loss = -(smoothed * log_probs).sum(-1)
    nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    return loss, nll


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothed_cross_entropy_matches_numpy(eps):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 11)).astype("float32") * 3
    targets = rng.integers(0, 11, size=(3, 5))
    loss, nll = label_smoothed_cross_entropy(targets, logits, eps)
    ref_loss, ref_nll = numpy_label_smoothed(targets, logits.astype("float64"), eps)
    np.testing.assert_allclose(np.asarray(loss), ref_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(nll), ref_nll, rtol=1e-5, atol=1e-5)


def numpy_kl(q, logits):
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, q * (np.log(q) - log_p), 0.0)
    return terms.sum(-1)


def test_kl_divergence_matches_numpy_and_ignores_zero_teacher_entries():
    from tfkd.training.losses import kl_divergence

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 6, 9)).astype("float32") * 2
    q = rng.dirichlet(np.ones(9), size=(4, 6))
    q[0, 0] = 0.0
    q[0, 0, 3] = 1.0  # a one-hot teacher: KL is then the student's NLL of that class
    np.testing.assert_allclose(
        np.asarray(kl_divergence(q.astype("float32"), logits)),
        numpy_kl(q, logits.astype("float64")),
        rtol=1e-5,
        atol=1e-5,
    )
    _, nll = label_smoothed_cross_entropy(np.array([[3]]), logits[:1, :1])
    np.testing.assert_allclose(
        np.asarray(kl_divergence(q[:1, :1].astype("float32"), logits[:1, :1])), np.asarray(nll), rtol=1e-5
    )
    # zero exactly when the student says what the teacher says
    same = np.log(q[1:2])
    np.testing.assert_allclose(
        np.asarray(kl_divergence(q[1:2].astype("float32"), same.astype("float32"))), 0.0, atol=1e-5
    )


def test_top_k_kl_divergence_reads_the_cached_ids_and_equals_the_full_kl_with_every_id():
    from tfkd.training.losses import kl_divergence, top_k_kl_divergence

    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 5, 7)).astype("float32")
    q = rng.dirichlet(np.ones(7), size=(3, 5)).astype("float32")
    order = np.argsort(-q, axis=-1)
    full = top_k_kl_divergence(order, np.take_along_axis(q, order, -1), logits)
    np.testing.assert_allclose(np.asarray(full), np.asarray(kl_divergence(q, logits)), rtol=1e-5, atol=1e-6)
    ids, probs = order[..., :2], np.take_along_axis(q, order[..., :2], -1)
    probs = probs / probs.sum(-1, keepdims=True)
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected = (probs * (np.log(probs) - np.take_along_axis(log_p, ids, -1))).sum(-1)
    np.testing.assert_allclose(np.asarray(top_k_kl_divergence(ids, probs, logits)), expected, rtol=1e-5)


def top_k_case(seed=0, vocab=13, k=4):
    """Student logits and a teacher's top K (ids, probabilities not renormalised: the loss does it)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 5, vocab)).astype("float32") * 2
    teacher = rng.dirichlet(np.ones(vocab), size=(2, 5))
    ids = np.argsort(-teacher, axis=-1)[..., :k]
    return logits, ids, np.take_along_axis(teacher, ids, -1).astype("float32")


def test_top_k_soft_cross_entropy_matches_numpy():
    from tfkd.training.losses import top_k_soft_cross_entropy

    logits, ids, probs = top_k_case()
    shifted = logits.astype("float64") - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected = -(probs / probs.sum(-1, keepdims=True) * np.take_along_axis(log_p, ids, -1)).sum(-1)
    np.testing.assert_allclose(np.asarray(top_k_soft_cross_entropy(ids, probs, logits)), expected, rtol=1e-5, atol=1e-5)


def test_all_zero_soft_targets_give_zero_loss():
    from tfkd.training.losses import top_k_soft_cross_entropy

    logits, ids, probs = top_k_case()
    probs[0, 2] = 0
    loss = np.asarray(top_k_soft_cross_entropy(ids, probs, logits))
    assert loss[0, 2] == 0 and np.isfinite(loss).all()


def test_take_last_axis_matches_numpy_with_shapes_known_only_when_run():
    import tensorflow as tf

    from tfkd.training.losses import take_last_axis

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 7)).astype("float32")
    ids = rng.integers(0, 7, size=(2, 3, 4))
    np.testing.assert_array_equal(np.asarray(take_last_axis(x, ids)), np.take_along_axis(x, ids, -1))
    dynamic = tf.function(
        take_last_axis,
        input_signature=[tf.TensorSpec([None, None, None], tf.float32), tf.TensorSpec([None, None, None], tf.int32)],
    )
    np.testing.assert_array_equal(dynamic(x, ids.astype("int32")).numpy(), np.take_along_axis(x, ids, -1))
    np.testing.assert_array_equal(
        np.asarray(take_last_axis(x[0], ids[0, :, :1])), np.take_along_axis(x[0], ids[0, :, :1], -1)
    )


def test_take_last_axis_in_an_xla_compiled_graph_gathers_without_a_runtime_branch():
    import tensorflow as tf

    from tfkd.training.losses import take_last_axis

    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 3, 7)).astype("float32")
    ids = rng.integers(0, 7, size=(2, 3, 2)).astype("int32")
    signature = [tf.TensorSpec([None, None, None], tf.float32), tf.TensorSpec([None, None, None], tf.int32)]

    def gathered_and_gradient(values, indices):
        with tf.GradientTape() as tape:
            tape.watch(values)
            taken = take_last_axis(values, indices)
            total = tf.reduce_sum(taken * tf.range(1.0, 3.0))
        return taken, tape.gradient(total, values)

    expected_gradient = np.zeros_like(x)
    for (b, t, k), v in np.ndenumerate(ids):
        expected_gradient[b, t, v] += k + 1.0
    for jit in (True, False):
        step = tf.function(gathered_and_gradient, input_signature=signature, jit_compile=jit)
        taken, gradient = step(x, ids)
        np.testing.assert_array_equal(taken.numpy(), np.take_along_axis(x, ids, -1))
        np.testing.assert_allclose(gradient.numpy(), expected_gradient)
        ops_in_graph = {op.type for op in step.get_concrete_function().graph.get_operations()}
        assert bool(ops_in_graph & {"If", "StatelessIf"}) is not jit, (jit, ops_in_graph)


def test_label_smoothed_cross_entropy_gradient_is_softmax_minus_the_smoothed_target():
    import tensorflow as tf

    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 3, 9)).astype("float32") * 2
    targets = rng.integers(0, 9, size=(2, 3))
    eps = 0.2

    @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.float32)])
    def gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss, _ = label_smoothed_cross_entropy(targets, x, eps)
            total = tf.reduce_sum(loss)
        return tape.gradient(total, x)

    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    smoothed = np.full(logits.shape, eps / 9)
    np.put_along_axis(smoothed, targets[..., None], 1 - eps + eps / 9, axis=-1)
    np.testing.assert_allclose(gradient(logits).numpy(), probs - smoothed, atol=1e-6)
