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
