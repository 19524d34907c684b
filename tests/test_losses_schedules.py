"""Losses and learning-rate schedules against NumPy references."""

import numpy as np
import pytest

from tfkd.training import InverseSqrtSchedule, label_smoothed_cross_entropy


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


def test_inverse_sqrt_schedule_matches_paper_formula():
    schedule = InverseSqrtSchedule(scale=2.0, hidden_dim=512, warmup_steps=4000)
    for step in [0, 1, 100, 3999, 4000, 10000, 100000]:
        paper_step = step + 1  # the optimizer's iteration counter starts at 0
        expected = 2.0 * 512**-0.5 * min(paper_step**-0.5, paper_step * 4000**-1.5)
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6)
    peak = [float(schedule(s)) for s in (3998, 3999, 4000)]
    assert peak[1] == pytest.approx(max(peak), rel=1e-6)
    assert InverseSqrtSchedule.from_config(schedule.get_config()).get_config() == schedule.get_config()


def test_triangular_schedule_matches_numpy():
    from tfkd.training.schedules import TriangularSchedule

    schedule = TriangularSchedule(5e-5, 100, 1000)
    for step in [0, 49, 99, 100, 500, 998, 999, 1500]:
        s = step + 1
        expected = 5e-5 * max(min(s / 100, (1000 - s) / 900), 0.0)
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-5, atol=1e-12)
