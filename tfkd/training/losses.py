"""Token-level losses, written in ``keras.ops`` and checked against NumPy in the tests."""

from keras import ops


def label_smoothed_cross_entropy(target_ids, logits, label_smoothing=0.0):
    """Per-token cross-entropy against ``(1 - eps) * one_hot(y) + eps / V``.

    Args:
        target_ids: int tensor ``[batch, length]``.
        logits: float tensor ``[batch, length, vocab]``.
        label_smoothing: ``eps`` in ``[0, 1)``.

    Returns:
        ``(loss, nll)``, both ``[batch, length]`` float32; ``nll`` is the unsmoothed
        negative log-likelihood of ``target_ids`` (for perplexity reporting).
    """
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    nll = -ops.squeeze(
        ops.take_along_axis(log_probs, ops.expand_dims(ops.cast(target_ids, "int32"), -1), axis=-1),
        axis=-1,
    )
    if not label_smoothing:
        return nll, nll
    smooth = -ops.mean(log_probs, axis=-1)
    return (1.0 - label_smoothing) * nll + label_smoothing * smooth, nll
