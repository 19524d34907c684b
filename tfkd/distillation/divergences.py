"""The divergences a student is distilled with, one declared family (``distill.divergence``).

Each compares the teacher's distribution ``p`` with the student's ``q`` position by position and
returns ``[...]`` float32 (sum over the outcomes; the trainer weighs and averages):

==================  =====================================================================
``forward_kl``      ``KL(p || q) = sum p log(p / q)``: mode-covering, the classic soft target
``reverse_kl``      ``KL(q || p)``: mode-seeking (MiniLLM)
``jsd``             generalized Jensen-Shannon, ``beta KL(p || m) + (1 - beta) KL(q || m)``
                    with ``m = beta p + (1 - beta) q``; as TRL's GKD, ``beta = 0`` is
                    ``forward_kl`` and ``beta = 1`` is ``reverse_kl`` (the mixture's limits
                    would be 0 there)
``tvd``             total variation, ``sum |p - q| / 2``
``skew_kl``         ``KL(p || skew p + (1 - skew) q)`` (DistiLLM's skew KL)
``skew_reverse_kl`` ``KL(q || skew q + (1 - skew) p)`` (DistiLLM's skew reverse KL)
==================  =====================================================================

A teacher kept as its top K (a teacher cache) is a distribution over K + 1 outcomes: its K
tokens and the tail, the mass outside them; the student's matching outcomes are its
probabilities at the K ids and the rest of its mass (:func:`top_k_divergence`, as TRL's
``loss_add_tail``). A cache written without the tail holds the K probabilities renormalised
to 1; there ``forward_kl`` is the soft cross-entropy tfkd has always used (the student's rest
weighs nothing), and the other divergences, undefined against a zero tail, compare both sides
renormalised over the K ids. Teacher probabilities are floored at :data:`FLOOR` wherever a
divergence takes their log against the student's mass.
"""

import dataclasses

from keras import ops

from tfkd.distillation.settings import DIVERGENCES

FLOOR = 1e-8  # a teacher probability under it counts as it, where its log is taken


def _kl(p, log_p, log_q):
    """``sum p (log p - log q)``; outcomes with ``p = 0`` add nothing."""
    return ops.sum(ops.where(p > 0, p * (log_p - log_q), 0.0), axis=-1)


def _log(p):
    return ops.log(ops.maximum(p, FLOOR))


def divergence(name, teacher_probs, student_log_probs, beta=0.5, skew=0.1):
    """Divergence ``name`` between ``p = teacher_probs`` and ``q = exp(student_log_probs)``
    over the last axis (both distributions over the same outcomes)."""
    p = ops.cast(teacher_probs, "float32")
    log_q = ops.cast(student_log_probs, "float32")
    q = ops.exp(log_q)
    if name == "forward_kl" or (name == "jsd" and beta == 0.0):
        return _kl(p, _log(p), log_q)
    if name == "reverse_kl" or (name == "jsd" and beta == 1.0):
        return _kl(q, log_q, _log(p))
    if name == "jsd":
        log_m = _log(beta * p + (1.0 - beta) * q)
        return beta * _kl(p, _log(p), log_m) + (1.0 - beta) * _kl(q, log_q, log_m)
    if name == "tvd":
        return 0.5 * ops.sum(ops.abs(p - q), axis=-1)
    if name == "skew_kl":
        return _kl(p, _log(p), _log(skew * p + (1.0 - skew) * q))
    if name == "skew_reverse_kl":
        return _kl(q, log_q, _log(skew * q + (1.0 - skew) * p))
    raise ValueError(f"divergence {name!r}: expected one of {', '.join(DIVERGENCES)}")


def dense_divergence(name, teacher_probs, student_logits, beta=0.5, skew=0.1):
    """:func:`divergence` of a teacher's whole distribution ``[..., V]`` and the student's
    ``softmax(student_logits)``."""
    log_q = ops.log_softmax(ops.cast(student_logits, "float32"), axis=-1)
    return divergence(name, teacher_probs, log_q, beta=beta, skew=skew)


def top_k_divergence(name, teacher_ids, teacher_probs, student_logits, tail=None, beta=0.5, skew=0.1):
    """:func:`divergence` of a top-K teacher and the student over K + 1 outcomes.

    Args:
        teacher_ids: ``[..., K]`` int ids into the student's last axis.
        teacher_probs: ``[..., K]`` the teacher's probabilities of those ids; all-zero rows
            (padding) give 0.
        student_logits: ``[..., V]``.
        tail: ``[...]`` the teacher's mass outside its K ids, or ``None`` for a cache without
            it (its K probabilities are then taken renormalised; see the module's docstring).
    """
    from tfkd.training.losses import log_softmax_at

    p = ops.cast(teacher_probs, "float32")
    total = ops.sum(p, axis=-1, keepdims=True)
    real = total[..., 0] > 0
    log_q_at = log_softmax_at(student_logits, teacher_ids)  # [..., K]
    if tail is None:
        p = ops.where(total > 0, p / ops.maximum(total, 1e-12), 0.0)
        if name == "forward_kl" or (name == "jsd" and beta == 0.0):
            values = _kl(p, _log(p), log_q_at)  # the soft cross-entropy, up to the teacher's entropy
        else:
            log_q_at = log_q_at - ops.logsumexp(log_q_at, axis=-1, keepdims=True)
            values = divergence(name, p, log_q_at, beta=beta, skew=skew)
    else:
        tail = ops.maximum(ops.cast(tail, "float32"), 0.0)[..., None]
        # the student's rest, log(1 - sum q_k), without the cancellation of 1 - sum q_k near 0
        inside = ops.minimum(ops.logsumexp(log_q_at, axis=-1, keepdims=True), -1e-7)
        log_rest = ops.log(ops.maximum(-ops.expm1(inside), 1e-12))
        p_all = ops.concatenate([p, tail], axis=-1)
        log_q_all = ops.concatenate([log_q_at, log_rest], axis=-1)
        values = divergence(name, p_all, log_q_all, beta=beta, skew=skew)
    return ops.where(real, values, 0.0)


@dataclasses.dataclass(frozen=True)
class Divergence:
    """A method's ``distill.divergence`` settings (:class:`tfkd.distillation.settings.DivergenceSettings`)
    applied to a teacher's distribution, per position."""

    name: str = "forward_kl"
    beta: float = 0.5
    skew: float = 0.1
    tail: bool = False  # a cache's tail mass as the K + 1-th outcome

    @classmethod
    def of(cls, section):
        return cls(section.divergence, section.beta, section.skew, section.tail)

    @property
    def is_soft_cross_entropy(self):
        """Forward KL over the renormalised top K: the classic soft target, whose loss a
        trainer may report as the cross-entropy (the same gradient)."""
        return self.name == "forward_kl" and not self.tail

    def top_k(self, teacher_ids, teacher_probs, student_logits, teacher_tail=None):
        """Per position, against a top-K teacher: ``teacher_probs`` over its K (renormalised
        here), ``teacher_tail`` the mass outside them (used with ``tail``; ``None`` for a cache
        without it, whose K are then taken as the whole distribution)."""
        if not self.tail or teacher_tail is None:
            return top_k_divergence(
                self.name, teacher_ids, teacher_probs, student_logits, beta=self.beta, skew=self.skew
            )
        p = ops.cast(teacher_probs, "float32")
        total = ops.sum(p, axis=-1, keepdims=True)
        tail = ops.clip(ops.cast(teacher_tail, "float32"), 0.0, 1.0)
        p = ops.where(total > 0, p / ops.maximum(total, 1e-12), 0.0) * (1.0 - tail[..., None])
        return top_k_divergence(self.name, teacher_ids, p, student_logits, tail=tail, beta=self.beta, skew=self.skew)

    def dense(self, teacher_probs, student_logits):
        """Per position, against a teacher's whole distribution."""
        return dense_divergence(self.name, teacher_probs, student_logits, beta=self.beta, skew=self.skew)
