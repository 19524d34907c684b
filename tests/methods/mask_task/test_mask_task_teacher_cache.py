"""``distill.teacher: cache``: one fixed X' per example, derived the same way when the cache is
written and when training reads it; the cached KD term against NumPy."""

import numpy as np
import pytest
import tensorflow as tf
import tiny_mask_task as tiny

from tfkd.methods.mask_task.teacher_cache import example_masking

SETTINGS = {"seed": 1, "mask_id": 4, "vocab_size": len(tiny.SOURCE_VOCAB), "masking": "token", "rate": 0.3}


def test_each_example_has_one_masked_copy_fixed_by_its_id():
    source = tf.constant(np.arange(5, 17) % 13 + 5, tf.int32)
    first, chosen = example_masking(source, 7, **SETTINGS)
    again, chosen_again = example_masking(source, 7, **SETTINGS)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(chosen, chosen_again)
    assert chosen.numpy().any() and (first.numpy()[~chosen.numpy()] == source.numpy()[~chosen.numpy()]).all()
    others = [example_masking(source, i, **SETTINGS)[1].numpy() for i in range(8, 14)]
    assert any(not np.array_equal(chosen, o) for o in others)  # another id, another masking
    span = example_masking(source, 7, **{**SETTINGS, "masking": "span"})[1].numpy()
    assert span.sum() == round(0.3 * 12)


def cached_batch(rng, dtype):
    """The tiny batch as a teacher cache gives it: ``(inputs, target, cached, chosen)``, the
    cached columns carrying random top-3 ids and probabilities (``dtype``) at the masked
    positions (``chosen``) and none elsewhere."""
    inputs, target = tiny.batch()
    batch, length = inputs["masked_source_ids"].shape
    teacher_ids = rng.integers(0, len(tiny.SOURCE_VOCAB), size=(batch, length, 3)).astype("int32")
    teacher_probs = rng.random((batch, length, 3)).astype(dtype)
    chosen = np.zeros((batch, length), bool)
    for r, (positions, weights) in enumerate(zip(inputs["mask_positions"], inputs["mask_weights"])):
        chosen[r, positions[weights > 0]] = True
    teacher_probs[~chosen] = 0
    cached = {k: v for k, v in inputs.items() if k not in ("mask_positions", "mask_ids", "mask_weights")}
    cached.update(teacher_ids=teacher_ids, teacher_probs=teacher_probs)
    return inputs, target, cached, chosen


@pytest.mark.parametrize("divergence", [None, "tvd", "forward_kl+tail"])
def test_the_cached_kd_term_is_the_top_k_cross_entropy_at_the_masked_positions(divergence):
    from tfkd.distillation.divergences import Divergence

    name, _, tail = (divergence or "").partition("+")
    setting = Divergence(name, tail=bool(tail)) if divergence else None
    trainer = tiny.mask_task_trainer(tiny.student(), teacher=None, divergence=setting)
    assert trainer.teacher is None
    rng = np.random.default_rng(3)
    inputs, target, cached, chosen = cached_batch(rng, "float16")
    teacher_ids, teacher_probs = cached["teacher_ids"], cached["teacher_probs"]
    batch, length = chosen.shape
    teacher_tail = np.where(chosen, rng.uniform(0.05, 0.4, size=(batch, length)), 0).astype("float16")
    if tail:
        cached["teacher_tail"] = teacher_tail
    terms, _ = trainer.compute_terms((cached, target), training=False)

    hidden, _ = trainer.student.encode(inputs["masked_source_ids"])
    total, count = 0.0, 0
    for r in range(batch):
        positions = np.flatnonzero(chosen[r])
        logits = trainer.mlm_head(hidden[r : r + 1], mask_positions=positions[None].astype("int32")).numpy()[0]
        log_p = logits - logits.max(-1, keepdims=True)
        log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
        for j, position in enumerate(positions):
            q = teacher_probs[r, position].astype("float32")
            q = q / q.sum()
            if divergence is None:  # the soft cross-entropy with the student's own probabilities
                total += -(q * log_p[j, teacher_ids[r, position]]).sum()
            elif tail:  # K + 1 outcomes: the K, scaled to leave the tail, and the rest
                p = np.exp(log_p[j, teacher_ids[r, position]])
                rest = float(teacher_tail[r, position])
                q_all, p_all = np.append(q * (1 - rest), rest), np.append(p, 1 - p.sum())
                total += (q_all * (np.log(q_all) - np.log(p_all))).sum()
            else:  # the student's probabilities renormalised over the K too
                p = np.exp(log_p[j, teacher_ids[r, position]])
                total += 0.5 * np.abs(q - p / p.sum()).sum()
            count += 1
    kd = terms["kd"]
    assert float(kd.count) == count == chosen.sum()
    np.testing.assert_allclose(float(kd.total) / float(kd.count), total / count, rtol=1e-4)


def test_a_temperature_schedule_re_tempers_the_cached_top_k_at_each_step():
    """``distill.temperature_schedule`` with a cache written at T 2: at each optimizer step the
    cached KD term is the one of a cache holding ``p ** (2 / T(step))`` renormalised."""
    from tfkd.distillation.temperature import TemperatureSchedule

    schedule = TemperatureSchedule("cosine", 4.0, 1.0, 10, cache_temperature=2.0)
    model = tiny.student()
    scheduled = tiny.mask_task_trainer(model, teacher=None, temperature=schedule)
    plain = tiny.mask_task_trainer(model, teacher=None)
    plain.mlm_head.set_weights(scheduled.mlm_head.get_weights())  # one student MLM head for both
    scheduled.compile(optimizer="sgd")
    _, target, cached, _ = cached_batch(np.random.default_rng(4), "float32")
    teacher_ids, teacher_probs = cached.pop("teacher_ids"), cached.pop("teacher_probs")
    for step, temperature in ((0, 4.0), (5, 2.5), (10, 1.0)):
        scheduled.optimizer.iterations.assign(step)
        terms, _ = scheduled.compute_terms(
            (dict(cached, teacher_ids=teacher_ids, teacher_probs=teacher_probs), target), False
        )
        tempered = np.where(teacher_probs > 0, teacher_probs ** (2.0 / temperature), 0.0).astype("float32")
        expected, _ = plain.compute_terms(
            (dict(cached, teacher_ids=teacher_ids, teacher_probs=tempered), target), False
        )
        np.testing.assert_allclose(float(terms["kd"].total), float(expected["kd"].total), rtol=1e-5, err_msg=str(step))
