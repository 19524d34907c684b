"""Mask-task and hidden-state KD losses against NumPy, the teacher's view of the source, the
GOM gate (eqs. 5-6) on hand-made gradients and in a real step."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny_mask_task as tiny
from helpers import TESTS

from tfkd.methods.mask_task.distiller import gated_sum, hidden_state_loss, mlm_distillation_loss, module_groups


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_mlm_distillation_loss_is_eq3_over_the_students_vocabulary():
    rng = np.random.default_rng(0)
    teacher_logits = rng.normal(size=(2, 3, 30)).astype("float32") * 3
    student_logits = rng.normal(size=(2, 3, 18)).astype("float32")
    to_teacher = np.array([0, 1, 2, 3, 4] + list(range(5, 30, 2)), "int32")
    q = np.exp(log_softmax(teacher_logits[..., to_teacher]))  # renormalised over the student's tokens
    expected = -(q * log_softmax(student_logits)).sum(-1)
    np.testing.assert_allclose(mlm_distillation_loss(teacher_logits, student_logits, to_teacher), expected, rtol=1e-5)


def test_hidden_state_loss_is_the_per_token_mean_squared_error():
    rng = np.random.default_rng(1)
    student, teacher = rng.normal(size=(2, 4, 6)), rng.normal(size=(2, 4, 6))
    np.testing.assert_allclose(hidden_state_loss(student, teacher), ((student - teacher) ** 2).mean(-1), rtol=1e-5)


def test_the_teacher_reads_cls_source_sep_in_its_own_ids():
    trainer = tiny.mask_task_trainer(tiny.student())
    source = np.array([[5, 6, 7], [8, 0, 0]], "int32")  # student ids: w0 w2 w4 / w6
    inputs = trainer.teacher_inputs(source)
    w = {t: i for i, t in enumerate(tiny.TEACHER_VOCAB)}
    assert inputs["token_ids"].numpy().tolist() == [[2, w["w0"], w["w2"], w["w4"], 3], [2, w["w6"], 3, 0, 0]]
    assert inputs["padding_mask"].numpy().tolist() == [[True] * 5, [True, True, True, False, False]]


def divergence_reference(name, q, log_p):
    """Per row: the teacher ``q`` against the student ``p = exp(log_p)``; ``None`` is eq. 3."""
    if name is None:
        return -(q * log_p).sum(-1)
    p = np.exp(log_p)
    if name == "reverse_kl":
        return (p * (log_p - np.log(q))).sum(-1)
    return 0.5 * np.abs(q - p).sum(-1)  # tvd


@pytest.mark.parametrize("name", [None, "reverse_kl", "tvd"])
def test_the_kd_term_is_eq3_averaged_over_the_masked_positions(name):
    from tfkd.distillation.divergences import Divergence

    trainer = tiny.mask_task_trainer(tiny.student(), divergence=name and Divergence(name))
    inputs, target = tiny.batch()
    terms, _ = trainer.compute_terms((inputs, target), training=False)
    kd = terms["kd"]
    np.testing.assert_allclose(float(kd.total) / float(kd.count), online_reference(trainer, inputs, name), rtol=1e-5)
    assert float(kd.count) == inputs["mask_weights"].sum()
    # the head is tied to the student's source embedding
    assert trainer.mlm_head.token_embedding is trainer.student.source_embedding


def test_a_temperature_schedule_divides_the_online_teachers_logits_at_each_step():
    """``distill.temperature_schedule`` with the teacher online: at each optimizer step ``q`` is
    the softmax of the teacher's logits over that step's temperature (linear 3 -> 1 over 10)."""
    from tfkd.distillation.temperature import TemperatureSchedule

    schedule = TemperatureSchedule("linear", 3.0, 1.0, 10, cache_temperature=1.0)
    trainer = tiny.mask_task_trainer(tiny.student(), temperature=schedule)
    trainer.compile(optimizer="sgd")
    inputs, target = tiny.batch()
    for step, temperature in ((0, 3.0), (5, 2.0), (10, 1.0), (30, 1.0)):
        trainer.optimizer.iterations.assign(step)
        terms, _ = trainer.compute_terms((inputs, target), training=False)
        kd = terms["kd"]
        expected = online_reference(trainer, inputs, None, temperature)
        np.testing.assert_allclose(float(kd.total) / float(kd.count), expected, rtol=1e-5, err_msg=str(step))
    assert trainer.temperature_tracker in trainer.metrics


def online_reference(trainer, inputs, name, temperature=1.0):
    """The KD term's mean over the masked positions, built independently: the teacher on
    ``[CLS] X' [SEP]`` in teacher ids, its logits over ``temperature``, restricted to the
    student's vocabulary."""
    w = {t: i for i, t in enumerate(tiny.TEACHER_VOCAB)}
    to_teacher = np.array([w[t] for t in tiny.SOURCE_VOCAB])
    rows = []
    for row in inputs["masked_source_ids"]:
        ids = [2] + [int(to_teacher[i]) for i in row if i != 0] + [3]
        rows.append(ids + [0] * (9 - len(ids)))
    token_ids = np.array(rows, "int32")
    teacher_logits = trainer.teacher(
        {
            "token_ids": token_ids,
            "segment_ids": np.zeros_like(token_ids),
            "padding_mask": token_ids != 0,
            "mask_positions": inputs["mask_positions"] + 1,
        }
    ).numpy()
    hidden, _ = trainer.student.encode(inputs["masked_source_ids"])
    student_logits = trainer.mlm_head(hidden, mask_positions=inputs["mask_positions"]).numpy()
    q = np.exp(log_softmax(teacher_logits[..., to_teacher].astype("float64") / temperature))
    per_position = divergence_reference(name, q, log_softmax(student_logits.astype("float64")))
    weights = inputs["mask_weights"]
    return (per_position * weights).sum() / weights.sum()


def test_gated_sum_reproduces_eq6_module_by_module():
    nmt = [tf.constant([1.0, 2.0]), tf.constant([1.0, 0.0]), tf.constant([1.0, 1.0]), tf.constant([3.0]), None]
    kd = [tf.constant([0.5, 0.5]), tf.constant([-1.0, 5.0]), tf.constant([1.0, -1.0]), None, tf.constant([7.0])]
    # module 0: <.,.> = 1.5 > 0 (kept); module 1: -1 (dropped); module 2: 0 (dropped: sign <= 0)
    combined, kept = gated_sum(nmt, kd, [[0], [1], [2], [3], [4]])
    np.testing.assert_array_equal(combined[0], [1.5, 2.5])
    np.testing.assert_array_equal(combined[1], [1.0, 0.0])
    np.testing.assert_array_equal(combined[2], [1.0, 1.0])
    np.testing.assert_array_equal(combined[3], [3.0])  # the KD loss does not reach it: g_nmt
    np.testing.assert_array_equal(combined[4], [7.0])  # only the KD loss reaches it (the MLM head): g_kd
    assert kept.numpy().tolist() == [1.0, 0.0, 0.0]


def test_gated_sum_decides_the_sign_over_the_whole_module():
    nmt = [tf.constant([1.0]), tf.constant([1.0])]
    kd = [tf.constant([-1.0]), tf.constant([3.0])]  # one variable disagrees, the module agrees
    combined, kept = gated_sum(nmt, kd, [[0, 1]])
    assert [c.numpy().tolist() for c in combined] == [[0.0], [4.0]] and kept.numpy().tolist() == [1.0]
    per_variable, kept = gated_sum(nmt, kd, [[0], [1]])
    assert [c.numpy().tolist() for c in per_variable] == [[1.0], [4.0]] and kept.numpy().tolist() == [0.0, 1.0]


@pytest.mark.parametrize("kd_sign, expected", [(1.0, [[1, 1], [2, 2], [1, 1]]), (-1.0, [[0, 0], [1, 1], [0, 0]])])
def test_embedding_gradients_from_lookups_keep_their_rows_and_gate_the_kd_rows(kd_sign, expected):
    slices = tf.IndexedSlices(tf.constant([[1.0, 1.0]]), tf.constant([1]), tf.constant([3, 2]))
    combined, kept = gated_sum([slices], [kd_sign * tf.ones([3, 2])], [[0]])
    assert isinstance(combined[0], tf.IndexedSlices)
    np.testing.assert_array_equal(tf.convert_to_tensor(combined[0]), expected)
    assert kept.numpy().tolist() == [1.0 if kd_sign > 0 else 0.0]


def test_modules_are_the_students_sublayers_or_single_variables():
    model = tiny.student()
    trainer = tiny.mask_task_trainer(model)
    inputs, _ = tiny.batch()
    trainer(inputs)
    variables = trainer.trainable_variables
    groups = module_groups(model, variables, "layer")
    names = [name for name, _ in groups]
    assert {"source_embedding", "encoder_0", "encoder_1", "encoder_norm", "decoder_0"} <= set(names)
    encoder_0 = dict(groups)["encoder_0"]
    assert len(encoder_0) > 4  # attention, feed-forward and norms of one block decide together
    assert all(variables[i].path.split("/")[-2:][0] != "student_mlm_head" for _, g in groups for i in g)
    assert sum(len(g) for _, g in groups) == len(model.trainable_variables)
    singles = module_groups(model, variables, "variable")
    assert len(singles) == len(model.trainable_variables) and all(len(g) == 1 for _, g in singles)


def train_once(trainer, data, optimizer):
    trainer.compile(optimizer=optimizer)
    trainer(data[0])
    trainer.optimizer.build(trainer.trainable_variables)
    logs = trainer.train_on_batch(*data, return_dict=True)
    return logs


@pytest.mark.parametrize("gate", ["layer", "variable"])
def test_with_alpha_zero_the_gated_step_equals_the_plain_nmt_step_exactly(gate):
    from tfkd import registry
    from tfkd.training import SupervisedTrainer

    data = tiny.batch()
    plain = tiny.student()
    train_once(SupervisedTrainer(plain, registry.lookup("task", "translation")), data, keras.optimizers.Adam(1e-2))
    gated_student = tiny.student()
    logs = train_once(tiny.mask_task_trainer(gated_student, alpha=0.0, gate=gate), data, keras.optimizers.Adam(1e-2))
    for a, b in zip(plain.get_weights(), gated_student.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert logs["kd_kept"] == 0.0  # a zero KD gradient has inner product 0: never kept


def test_the_gate_changes_the_update_only_where_the_kd_gradient_disagrees():
    data = tiny.batch()
    ungated, gated = tiny.student(), tiny.student()
    train_once(tiny.mask_task_trainer(ungated, alpha=1.0), data, keras.optimizers.SGD(0.1))
    trainer = tiny.mask_task_trainer(gated, alpha=1.0, gate="layer")
    logs = train_once(trainer, data, keras.optimizers.SGD(0.1))
    assert 0.0 <= logs["kd_kept"] <= 1.0
    # the decoder never sees the KD loss: identical either way
    for a, b in zip(ungated.decoder_blocks[0].get_weights(), gated.decoder_blocks[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    # an encoder module whose KD gradient was dropped moved by g_nmt alone: unlike the ungated step
    changed = [
        not all(np.array_equal(a, b) for a, b in zip(u.get_weights(), g.get_weights()))
        for u, g in zip(ungated.encoder_blocks, gated.encoder_blocks)
    ]
    assert logs["kd_kept"] == 1.0 or any(changed)


def test_the_hidden_state_term_projects_the_encoder_output_onto_the_teachers_layer():
    from tfkd import registry
    from tfkd.methods.mask_task.distiller import HiddenStateDistiller
    from tfkd.teachers.checkpoints import bert_layer_outputs

    source_tok, teacher_tok = tiny.tokenizers()
    backbone = tiny.teacher_masked_lm().backbone
    model = tiny.student()
    trainer = HiddenStateDistiller(
        model,
        registry.lookup("task", "translation"),
        backbone,
        source_tok,
        teacher_tok,
        loss_weights={"xe": 1.0, "kd": 1.0},
        teacher_layer=0,
    )
    inputs, target = tiny.batch()
    terms, _ = trainer.compute_terms((inputs, target), training=False)
    hidden, padding = model.encode(inputs["source_ids"])
    teacher = bert_layer_outputs(backbone, trainer.teacher_inputs(inputs["source_ids"]))[0].numpy()[:, 1:8]
    error = ((trainer.projection(hidden).numpy() - teacher) ** 2).mean(-1)
    mask = padding.numpy().astype("float32")
    np.testing.assert_allclose(
        float(terms["kd"].total) / float(terms["kd"].count), (error * mask).sum() / mask.sum(), rtol=1e-5
    )
    logs = train_once(trainer, (inputs, target), keras.optimizers.SGD(0.1))
    assert logs["kd"] > 0 and "kd_kept" not in logs  # no gate unless asked


@pytest.mark.parametrize("gate", ["layer", "variable"])
def test_the_gated_step_on_two_replicas_equals_one_device(gate):
    """Mirrored over two logical CPUs: the sign is decided on the all-reduced gradients, so the
    update equals one device's on the same global batch (uneven padding per replica)."""
    import json
    import os
    import subprocess
    import sys

    script = os.path.join(TESTS, "mirrored_gated_step.py")
    out = subprocess.run(
        [sys.executable, script, gate, "one_device", "mirrored"], capture_output=True, text=True, timeout=600, cwd=TESTS
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    one, mirrored = result["one_device"], result["mirrored"]
    assert one["replicas"] == 1 and mirrored["replicas"] == 2
    assert one["kd"] > 0.1 and abs(mirrored["kd"] - one["kd"]) < 1e-4 * one["kd"]
    if gate == "layer":
        assert mirrored["kd_kept"] == one["kd_kept"]
    else:
        # a few single variables (attention key biases: softmax ignores them) have gradients that
        # are zero but for rounding, whose sign differs with the order of the replica sum
        assert abs(mirrored["kd_kept"] - one["kd_kept"]) < 0.05
    for a, b in zip(one["weights"], mirrored["weights"]):
        np.testing.assert_allclose(np.array(b), np.array(a), atol=1e-5)


def test_kd_input_clean_distils_at_the_same_positions_on_the_original_source():
    """Table 2's "KD on Mask Task, orign" row: the teacher and the student read X, not X', at
    the chosen positions: the term equals the masked one's on a batch whose X' is X."""
    from tfkd.methods.mask_task.distiller import MaskTaskDistiller

    model = tiny.student()
    masked = tiny.mask_task_trainer(model)
    source_tok, teacher_tok = tiny.tokenizers()
    clean = MaskTaskDistiller(
        model,
        masked.task,
        masked.teacher,
        source_tok,
        teacher_tok,
        loss_weights={"xe": 1.0, "kd": 0.5},
        kd_input="clean",
    )
    clean.mlm_head.set_weights(masked.mlm_head.get_weights())
    inputs, target = tiny.batch()
    unmasked = {**inputs, "masked_source_ids": inputs["source_ids"]}

    def kd(trainer, batch):
        term = trainer.compute_terms((batch, target), training=False)[0]["kd"]
        return float(term.total) / float(term.count), float(term.count)

    assert kd(clean, inputs) == pytest.approx(kd(masked, unmasked), rel=1e-6)
    assert kd(clean, inputs)[1] == inputs["mask_weights"].sum()
    assert abs(kd(clean, inputs)[0] - kd(masked, inputs)[0]) > 1e-3  # X' is not what it read
    with pytest.raises(ValueError, match='kd_input must be "masked" or "clean"'):
        MaskTaskDistiller(model, masked.task, None, source_tok, teacher_tok, {"xe": 1.0}, kd_input="orig")
