"""The soft-target loss and the compound loss against NumPy."""

import numpy as np
import pytest

from tfkd.training.losses import label_smoothed_cross_entropy
from tfkd.training.soft_target import SoftTargetDistiller, top_k_soft_cross_entropy


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


def test_top_k_soft_cross_entropy_matches_numpy():
    logits, ids, probs, _ = random_case()
    np.testing.assert_allclose(np.asarray(top_k_soft_cross_entropy(ids, probs, logits)),
                               numpy_bidi(logits, ids, probs), rtol=1e-5, atol=1e-5)


def test_all_zero_soft_targets_give_zero_loss():
    logits, ids, probs, _ = random_case()
    probs[0, 2] = 0
    loss = np.asarray(top_k_soft_cross_entropy(ids, probs, logits))
    assert loss[0, 2] == 0 and np.isfinite(loss).all()


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9])
def test_compound_loss_matches_numpy(alpha):
    from tfkd.models import TransformerSeq2Seq

    logits, ids, probs, targets = random_case(1)
    student = TransformerSeq2Seq(10, 13, encoder_layers=1, decoder_layers=1, hidden_dim=8,
                                 intermediate_dim=8, num_heads=2)
    distiller = SoftTargetDistiller(student, alpha=alpha, label_smoothing=0.1)
    terms = distiller.token_losses({"teacher_ids": ids, "teacher_probs": probs}, targets, logits)
    lp = log_softmax(logits.astype("float64"))
    nll = -np.take_along_axis(lp, targets[..., None], -1)[..., 0]
    xe = 0.9 * nll + 0.1 * -lp.mean(-1)
    expected = alpha * numpy_bidi(logits, ids, probs) + (1 - alpha) * xe
    np.testing.assert_allclose(np.asarray(terms["loss"]), expected, rtol=1e-5, atol=1e-5)


def test_alpha_zero_is_plain_label_smoothed_cross_entropy():
    from tfkd.models import TransformerSeq2Seq

    logits, ids, probs, targets = random_case(2)
    student = TransformerSeq2Seq(10, 13, encoder_layers=1, decoder_layers=1, hidden_dim=8,
                                 intermediate_dim=8, num_heads=2)
    distiller = SoftTargetDistiller(student, alpha=0.0, label_smoothing=0.1)
    terms = distiller.token_losses({"teacher_ids": ids, "teacher_probs": probs}, targets, logits)
    plain, _ = label_smoothed_cross_entropy(targets, logits, 0.1)
    np.testing.assert_allclose(np.asarray(terms["loss"]), np.asarray(plain), rtol=1e-6)
