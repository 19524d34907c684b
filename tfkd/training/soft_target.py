"""Soft-target distillation (cmlm_kd.txt, eq. 4-5): the student learns from cached top-K
teacher distributions as well as from the reference."""

from keras import ops

from tfkd.training.losses import label_smoothed_cross_entropy
from tfkd.training.seq2seq import Seq2SeqTrainer


def top_k_soft_cross_entropy(teacher_ids, teacher_probs, logits):
    """Per-token ``-sum_k p_k log q(w_k)`` against a renormalised top-K teacher distribution.

    Args:
        teacher_ids: int ``[batch, length, K]``, the teacher's top-K token ids.
        teacher_probs: float ``[batch, length, K]``, their probabilities (any scale; they are
            renormalised to sum to 1 over K; all-zero rows give a zero loss).
        logits: student logits ``[batch, length, vocab]``.
    """
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    probs = ops.cast(teacher_probs, "float32")
    total = ops.sum(probs, axis=-1, keepdims=True)
    probs = ops.where(total > 0, probs / ops.maximum(total, 1e-12), 0.0)
    student = ops.take_along_axis(log_probs, ops.cast(teacher_ids, "int32"), axis=-1)
    return -ops.sum(probs * student, axis=-1)


class SoftTargetDistiller(Seq2SeqTrainer):
    """``alpha * L_bidi + (1 - alpha) * L_xe`` with soft targets streamed from the teacher cache.

    The batch's inputs carry ``teacher_ids`` and ``teacher_probs`` (``[B, T, K]``, aligned with
    the target positions); the teacher itself is never run here. The temperature was applied
    to the teacher when the cache was written, never to the student (the paper's footnote 6).
    Label smoothing applies to ``L_xe`` only.

    Args:
        student: the seq2seq student.
        alpha: weight of the soft-target term.
        label_smoothing: epsilon of ``L_xe``.
        pad_id: target padding id.
    """

    loss_terms = ("loss", "nll", "soft")

    def __init__(self, student, alpha=0.5, label_smoothing=0.1, pad_id=0, **kwargs):
        super().__init__(student, label_smoothing=label_smoothing, pad_id=pad_id, **kwargs)
        self.alpha = alpha

    def token_losses(self, inputs, target_ids, logits):
        xe, nll = label_smoothed_cross_entropy(target_ids, logits, self.label_smoothing)
        if "teacher_ids" not in inputs:  # validation batches carry no soft targets
            return {"loss": xe, "nll": nll}
        bidi = top_k_soft_cross_entropy(inputs["teacher_ids"], inputs["teacher_probs"], logits)
        return {"loss": self.alpha * bidi + (1.0 - self.alpha) * xe, "nll": nll, "soft": bidi}
