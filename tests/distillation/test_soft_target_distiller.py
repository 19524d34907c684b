"""The soft-target distiller's compound loss against NumPy (its top-K term: ``tests/training/test_losses.py``)."""

import os

import numpy as np
import pytest

from tfkd.distillation.soft_target_distiller import SoftTargetDistiller


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def random_case(seed=0, vocab=13, k=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 5, vocab)) * 2
    teacher_logits = rng.normal(size=(2, 5, vocab)) * 3
    temperature = 2.5
    teacher = np.exp(log_softmax(teacher_logits / temperature))
    ids = np.argsort(-teacher, axis=-1)[..., :k]
    probs = np.take_along_axis(teacher, ids, -1)  # not renormalised: the loss does it
    targets = rng.integers(1, vocab, size=(2, 5))
    return logits.astype("float32"), ids, probs.astype("float32"), targets


def numpy_bidi(logits, ids, probs):
    p = probs / probs.sum(-1, keepdims=True)
    return -(p * np.take_along_axis(log_softmax(logits.astype("float64")), ids, -1)).sum(-1)


def distiller_case(alpha, seed=1):
    """A tiny student, a batch with padding and soft targets, and the student's logits."""
    import keras

    from tfkd import registry
    from tfkd.models import TransformerSeq2Seq

    keras.utils.set_random_seed(seed)
    _, ids, probs, targets = random_case(seed)
    targets[1, 3:] = 0  # padding
    rng = np.random.default_rng(seed)
    inputs = {
        "source_ids": rng.integers(1, 10, size=(2, 4)).astype("int32"),
        "decoder_ids": np.concatenate([np.full((2, 1), 2), targets[:, :-1]], 1).astype("int32"),
        "teacher_ids": ids.astype("int32"),
        "teacher_probs": probs,
    }
    student = TransformerSeq2Seq(
        10, 13, encoder_layers=1, decoder_layers=1, hidden_dim=8, intermediate_dim=8, num_heads=2, dropout=0.0
    )
    distiller = SoftTargetDistiller(
        student,
        registry.lookup("task", "translation"),
        loss_weights={"soft": alpha, "xe": 1 - alpha},
        label_smoothing=0.1,
    )
    logits = np.asarray(student(inputs), "float64")
    return distiller, inputs, targets, logits, ids, probs


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9])
def test_distiller_terms_match_numpy(alpha):
    distiller, inputs, targets, logits, ids, probs = distiller_case(alpha)
    terms, tokens = distiller.compute_terms((inputs, targets), training=False)
    mask = targets != 0
    lp = log_softmax(logits)
    nll = -np.take_along_axis(lp, targets[..., None], -1)[..., 0]
    xe = 0.9 * nll + 0.1 * -lp.mean(-1)
    assert float(tokens) == mask.sum()
    for name, per_token in (("soft", numpy_bidi(logits, ids, probs)), ("xe", xe), ("nll", nll)):
        assert float(terms[name].count) == mask.sum()
        np.testing.assert_allclose(float(terms[name].total), (per_token * mask).sum(), rtol=1e-5, err_msg=name)


def test_validation_batches_without_soft_targets_report_xe_only():
    distiller, inputs, targets, _, _, _ = distiller_case(0.5)
    plain = {k: v for k, v in inputs.items() if not k.startswith("teacher_")}
    terms, _ = distiller.compute_terms((plain, targets), training=False)
    assert sorted(terms) == ["nll", "xe"]
    distiller.compile(optimizer="sgd")
    logs = distiller.test_step((plain, targets))
    # the loss of a batch without the soft term is xe alone (weights renormalised)
    np.testing.assert_allclose(float(logs["loss"]), float(logs["xe"]), rtol=1e-6)


@pytest.mark.parametrize("setting", ["reverse_kl", "jsd", "forward_kl_with_tail"])
def test_a_spec_divergence_is_the_soft_term_the_distiller_minimises(setting):
    """``distill.divergence`` / ``distill.tail`` of a soft_target spec reach the run's trainer
    (``SoftTargetDistiller.for_run``): its soft term is that divergence, against NumPy, over
    the K renormalised or, with the tail, over K + 1 outcomes."""
    from types import SimpleNamespace

    from helpers import REPO

    from tfkd import registry
    from tfkd.spec import load_spec

    name = "forward_kl" if setting == "forward_kl_with_tail" else setting
    flags = [f"distill.divergence={name}", f"distill.tail={'true' if setting.endswith('tail') else 'false'}"]
    spec = load_spec(os.path.join(REPO, "specs", "quickstart.yaml"), flags)
    assert spec.method == "soft_target"
    distiller, inputs, targets, logits, ids, probs = distiller_case(0.5)
    context = SimpleNamespace(spec=spec, task=registry.lookup("task", "translation"))
    run_distiller = SoftTargetDistiller.for_run(context, distiller.student, distiller.loss_weights)
    stored, tail = probs / probs.sum(-1, keepdims=True), 1.0 - probs.sum(-1)
    inputs = dict(inputs, teacher_probs=stored.astype("float32"), teacher_tail=tail.astype("float32"))
    terms, _ = run_distiller.compute_terms((inputs, targets), training=False)
    q = np.exp(log_softmax(logits))
    mask = targets != 0
    expected = 0.0
    for b, t in zip(*np.nonzero(mask)):
        p_k, q_k = probs[b, t], np.take_along_axis(q[b, t], ids[b, t], -1)
        if setting == "forward_kl_with_tail":
            p_all, q_all = np.append(p_k, 1 - p_k.sum()), np.append(q_k, 1 - q_k.sum())
            expected += (p_all * np.log(p_all / q_all)).sum()
        else:
            p_n, q_n = p_k / p_k.sum(), q_k / q_k.sum()
            if name == "reverse_kl":
                expected += (q_n * np.log(q_n / p_n)).sum()
            else:
                m = 0.5 * (p_n + q_n)
                expected += 0.5 * (p_n * np.log(p_n / m)).sum() + 0.5 * (q_n * np.log(q_n / m)).sum()
    np.testing.assert_allclose(float(terms["soft"].total), expected, rtol=1e-4)


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_a_temperature_schedule_re_tempers_the_cache_at_each_optimizer_step(kind):
    """``distill.temperature_schedule`` of a soft_target spec reaches the run's trainer (the
    method's ``make_trainer``): at each optimizer step the soft term is the soft cross-entropy
    against the teacher's top K at that step's temperature, computed here from the teacher's
    logits, though the cache was written once at ``cache.temperature`` (2.5)."""
    from types import SimpleNamespace

    from helpers import REPO

    from tfkd import registry
    from tfkd.spec import load_spec

    schedule = "{kind: constant, start: 1.5}" if kind == "constant" else f"{{kind: {kind}, start: 2.5, end: 1.0}}"
    flags = ["distill.cache.temperature=2.5", "train.steps=100", f"distill.temperature_schedule={schedule}"]
    spec = load_spec(os.path.join(REPO, "specs", "quickstart.yaml"), flags)
    distiller, inputs, targets, logits, ids, probs = distiller_case(0.5)
    rng = np.random.default_rng(1)  # random_case(1)'s draws: the student's, then the teacher's logits
    rng.normal(size=(2, 5, 13))
    teacher_logits = rng.normal(size=(2, 5, 13)) * 3
    context = SimpleNamespace(spec=spec, task=registry.lookup("task", "translation"))
    trainer = registry.lookup("method", "soft_target").make_trainer(context, distiller.student)
    trainer.compile(optimizer="sgd")
    mask = targets != 0
    for step in (0, 50, 100, 400):
        trainer.optimizer.iterations.assign(step)
        done = min(step / 100, 1.0)
        temperature = {
            "linear": 2.5 - 1.5 * done,
            "cosine": 1.0 + 1.5 * 0.5 * (1 + np.cos(np.pi * done)),
            "constant": 1.5,
        }[kind]
        at_temperature = np.exp(log_softmax(np.take_along_axis(teacher_logits, ids, -1) / temperature))
        terms, _ = trainer.compute_terms((inputs, targets), training=False)
        expected = (numpy_bidi(logits, ids, at_temperature) * mask).sum()
        np.testing.assert_allclose(float(terms["soft"].total), expected, rtol=1e-4, err_msg=str(step))
        # the step's temperature is reported beside the loss terms
        tracker = trainer.temperature_tracker
        assert tracker in trainer.metrics and np.isclose(float(tracker.result()), temperature, rtol=1e-5)
        tracker.reset_state()
    # in a traced step the temperature follows the optimizer's step variable, not a traced constant
    import tensorflow as tf

    traced = tf.function(lambda: trainer.compute_terms((inputs, targets), training=False)[0]["soft"].total)
    for step in (0, 50):
        trainer.optimizer.iterations.assign(step)
        eager = trainer.compute_terms((inputs, targets), training=False)[0]["soft"].total
        np.testing.assert_allclose(float(traced()), float(eager), rtol=1e-5)
    # without a schedule the cache is read as written
    plain = registry.lookup("method", "soft_target").make_trainer(
        SimpleNamespace(spec=load_spec(os.path.join(REPO, "specs", "quickstart.yaml")), task=context.task),
        distiller.student,
    )
    assert plain.temperature is None
