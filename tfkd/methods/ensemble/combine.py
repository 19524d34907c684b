"""Several teachers' top-K distributions at the same positions combined into one, in the
teacher-cache form (``ids``, ``probs`` ``[T, sum K]``), which the soft-target loss reads:
``-sum_j probs_j log p_student(ids_j)`` with ``probs`` renormalised
(:func:`tfkd.training.losses.top_k_soft_cross_entropy`).

Each teacher's row is renormalised over its K first (a cache keeps float16 probabilities); an
all-zero row (a position the teacher did not predict) leaves that teacher out of the position.
"""

import numpy as np


def _normalised(probs):
    probs = np.asarray(probs, np.float64)
    total = probs.sum(-1, keepdims=True)
    return np.where(total > 0, probs / np.maximum(total, 1e-300), 0.0)


def mixture(teachers, weights):
    """``sum_i w_i q_i``: the teachers' ids side by side and their probabilities scaled by the
    weights. A token several teachers keep appears once per teacher; the loss is linear in the
    probabilities, so that equals one entry with the summed probability.

    Args:
        teachers: ``[(ids [T, K_i], probs [T, K_i])]``.
        weights: ``[w_i]`` (normalised here).

    Returns:
        ``(ids [T, sum K_i] int32, probs [T, sum K_i] float32)``, each row summing to 1 over
        the teachers that predict it.
    """
    weights = np.asarray(weights, np.float64) / np.sum(weights)
    ids = np.concatenate([np.asarray(i, np.int32) for i, _ in teachers], axis=-1)
    parts = [w * _normalised(p) for w, (_, p) in zip(weights, teachers, strict=True)]
    probs = np.concatenate(parts, axis=-1)
    total = probs.sum(-1, keepdims=True)
    return ids, np.where(total > 0, probs / np.maximum(total, 1e-300), 0.0).astype(np.float32)


def product(teachers, weights):
    """``prod_i q_i(v)^w_i``, normalised over the union of the teachers' kept tokens (a product
    of experts). A token outside teacher i's top K gets the smallest probability that teacher
    kept at the position (an upper bound of what it gives that token), so the product does not
    vanish where one teacher's top K missed a token the others keep. At a position some
    teachers do not predict, the weights are renormalised over those that do.

    Returns:
        ``(ids [T, sum K_i] int32, probs [T, sum K_i] float32)``: a token kept by several
        teachers holds its probability at its first entry, 0 at the others.
    """
    weights = np.asarray(weights, np.float64) / np.sum(weights)
    ids = np.concatenate([np.asarray(i, np.int32) for i, _ in teachers], axis=-1)
    score = np.zeros(ids.shape, np.float64)
    present = np.zeros(ids.shape[:-1] + (1,), np.float64)  # the weight of the teachers predicting a position
    for w, (own_ids, own_probs) in zip(weights, teachers, strict=True):
        q = _normalised(own_probs)
        predicts = q.sum(-1, keepdims=True) > 0  # [T, 1]
        match = np.asarray(own_ids)[..., :, None] == ids[..., None, :]  # [T, K_i, sum K]
        kept = match & (q[..., :, None] > 0)
        at = np.where(kept, q[..., :, None], 0.0).sum(-2)  # q_i(v) for each union entry
        floor = np.where(q > 0, q, np.inf).min(-1, keepdims=True)
        log_q = np.log(np.where(kept.any(-2), at, np.where(np.isfinite(floor), floor, 1.0)))
        score += np.where(predicts, w * log_q, 0.0)
        present += np.where(predicts, w, 0.0)
    score /= np.maximum(present, 1e-300)  # the weights renormalised over the teachers present
    # each token once (its first entry in the union), and only tokens some teacher kept
    entry_probs = np.concatenate([_normalised(p) for _, p in teachers], axis=-1)
    kept = entry_probs > 0
    earlier = np.triu(np.ones((ids.shape[-1], ids.shape[-1]), bool), k=1)  # [j', j]: j' < j
    duplicate = ((ids[..., :, None] == ids[..., None, :]) & kept[..., :, None] & earlier).any(-2)
    keep = kept & ~duplicate
    score = np.where(keep, score, -np.inf)
    top = np.where(keep.any(-1, keepdims=True), score.max(-1, keepdims=True), 0.0)
    probs = np.where(keep, np.exp(score - top), 0.0)
    total = probs.sum(-1, keepdims=True)
    return ids, np.where(total > 0, probs / np.maximum(total, 1e-300), 0.0).astype(np.float32)


COMBINATIONS = {"mixture": mixture, "product": product}

__all__ = ["COMBINATIONS", "mixture", "product"]
