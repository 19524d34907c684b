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


def kl_divergence(teacher_probs, student_logits):
    """``KL(q || p) = sum_k q_k (log q_k - log p_k)`` over the last axis, with ``p =
    softmax(student_logits)`` (zero-probability teacher entries add nothing).

    Args:
        teacher_probs: ``[..., C]`` probabilities (rows sum to 1).
        student_logits: ``[..., C]`` logits.

    Returns:
        ``[...]`` float32. Its gradient in the logits is that of the cross-entropy against
        ``q``: ``softmax(student_logits) - q``.
    """
    q = ops.cast(teacher_probs, "float32")
    log_p = ops.log_softmax(ops.cast(student_logits, "float32"), axis=-1)
    log_q = ops.log(ops.maximum(q, 1e-30))
    return ops.sum(ops.where(q > 0, q * (log_q - log_p), 0.0), axis=-1)


def top_k_kl_divergence(teacher_ids, teacher_probs, student_logits):
    """:func:`kl_divergence` of a teacher kept as its top K (a teacher cache): ``sum_k q_k
    (log q_k - log p[id_k])`` over the K cached ids, ``q`` renormalised over them.

    Args:
        teacher_ids: ``[..., K]`` int ids into the student's last axis.
        teacher_probs: ``[..., K]`` probabilities (zero rows contribute nothing).
        student_logits: ``[..., V]`` logits.

    Returns:
        ``[...]`` float32.
    """
    q = ops.cast(teacher_probs, "float32")
    log_p = ops.log_softmax(ops.cast(student_logits, "float32"), axis=-1)
    log_p_at = ops.take_along_axis(log_p, ops.cast(teacher_ids, "int32"), axis=-1)
    log_q = ops.log(ops.maximum(q, 1e-30))
    return ops.sum(ops.where(q > 0, q * (log_q - log_p_at), 0.0), axis=-1)
