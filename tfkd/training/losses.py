"""Token-level losses, written in ``keras.ops`` and checked against NumPy in the tests; the top-K
ones read a teacher kept as its top K (:mod:`tfkd.teachers.topk_cache`)."""

from keras import ops


def take_last_axis(x, indices):
    """``x``'s entries at ``indices`` along the last axis: ``take_along_axis(x, indices, -1)``
    for ``x`` ``[..., V]`` and ``indices`` ``[..., K]`` with the same leading shape.

    Outside XLA it gathers from ``x`` flattened, with int32 offsets wherever ``x`` has fewer
    than 2**31 entries (int64 beyond, a runtime branch). TensorFlow's gradient of a gather
    scatters into all of ``x`` through ``UnsortedSegmentSum``, which is about ten times slower
    with int64 ids, and ``ops.take_along_axis`` always gathers with int64 ids: on a
    ``[1400, 5783]`` logit matrix that scatter cost 47 ms of a 540 ms training step
    (``tools/profile_step.py``). In a graph XLA compiles (``train.jit_compile: true``) it is
    ``ops.take_along_axis``: XLA fuses that gather and its gradient itself, while the runtime
    branch made the compiled step 6.3 times slower (``tools/profile_step.py --xla``).
    """
    if _in_xla_context():
        return ops.take_along_axis(x, indices, axis=-1)
    width = ops.shape(x)[-1]
    count = ops.shape(indices)[-1]
    rows = ops.size(indices) // count
    values = ops.reshape(x, (-1,))

    def gather(dtype):
        starts = ops.arange(rows, dtype=dtype) * ops.cast(width, dtype)
        return ops.take(values, ops.reshape(ops.cast(indices, dtype), (-1, count)) + starts[:, None])

    fits_int32 = ops.cast(rows, "int64") * ops.cast(width, "int64") < 2**31
    taken = ops.cond(fits_int32, lambda: gather("int32"), lambda: gather("int64"))
    return ops.reshape(taken, ops.shape(indices))


def _in_xla_context():
    """Whether the graph being traced now is compiled by XLA (a ``tf.function`` with
    ``jit_compile=True``, as Keras builds a step compiled with ``jit_compile=True``)."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    if tf.executing_eagerly():
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


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
    logits = ops.cast(logits, "float32")
    log_normalizer = ops.logsumexp(logits, axis=-1)
    nll = log_normalizer - take_last_axis(logits, ops.expand_dims(target_ids, -1))[..., 0]
    if not label_smoothing:
        return nll, nll
    smooth = log_normalizer - ops.mean(logits, axis=-1)  # -mean(log_softmax(logits))
    return (1.0 - label_smoothing) * nll + label_smoothing * smooth, nll


def log_softmax_at(logits, ids):
    """``log_softmax(logits)`` at ``ids`` ``[..., K]`` along the last axis, float32, without
    materialising the whole ``log_softmax`` (see :func:`take_last_axis`)."""
    logits = ops.cast(logits, "float32")
    return take_last_axis(logits, ids) - ops.logsumexp(logits, axis=-1, keepdims=True)


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
    log_p_at = log_softmax_at(student_logits, teacher_ids)
    log_q = ops.log(ops.maximum(q, 1e-30))
    return ops.sum(ops.where(q > 0, q * (log_q - log_p_at), 0.0), axis=-1)


def top_k_soft_cross_entropy(teacher_ids, teacher_probs, logits):
    """Per-token ``-sum_k p_k log q(w_k)`` against a renormalised top-K teacher distribution.

    Args:
        teacher_ids: int ``[batch, length, K]``, the teacher's top-K token ids.
        teacher_probs: float ``[batch, length, K]``, their probabilities (any scale; they are
            renormalised to sum to 1 over K; all-zero rows give a zero loss).
        logits: student logits ``[batch, length, vocab]``.
    """
    probs = ops.cast(teacher_probs, "float32")
    total = ops.sum(probs, axis=-1, keepdims=True)
    probs = ops.where(total > 0, probs / ops.maximum(total, 1e-12), 0.0)
    student = log_softmax_at(logits, teacher_ids)
    return -ops.sum(probs * student, axis=-1)
