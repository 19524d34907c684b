"""LightPAFF's fine-tuning distillation (appendix eq. 5) against NumPy: cross-entropy on the
labelled examples, KL to the teacher's class distribution on all of them."""

import keras
import numpy as np
import pytest

from tfkd.methods.two_stage.finetune import FinetuneDistiller
from tfkd.models.bert_classifier import BertClassifier
from tfkd.training.trainer import SupervisedTrainer


def registered_task():
    from tfkd import registry

    return registry.lookup("task", "classification")


def student():
    keras.utils.set_random_seed(4)
    return BertClassifier(
        vocabulary_size=30,
        num_classes=3,
        num_layers=1,
        hidden_dim=8,
        num_heads=2,
        intermediate_dim=16,
        max_sequence_length=16,
        dropout=0.0,
    )


def batch():
    rng = np.random.default_rng(5)
    token_ids = rng.integers(5, 30, size=(4, 6)).astype("int32")
    padding = np.ones((4, 6), bool)
    padding[3, 4:] = False
    teacher = rng.dirichlet(np.ones(3), size=4).astype("float32")
    labels = np.array([2, 0, -1, 1], "int32")  # the third example is a teacher-labelled sentence
    return {"token_ids": token_ids, "padding_mask": padding, "teacher_probs": teacher}, labels


def numpy_terms(model, inputs, labels):
    logits = np.asarray(model({"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]}), "float64")
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    labelled = labels >= 0
    xe = -log_p[np.flatnonzero(labelled), labels[labelled]].mean()
    q = inputs["teacher_probs"].astype("float64")
    kl = (q * (np.log(q) - log_p)).sum(-1).mean()
    return xe, kl


def loss_of(trainer, data, training=False):
    terms, _ = trainer.compute_terms(data, training=training)
    values = trainer._values(terms)
    return sum(w * float(values[name]) for name, w in trainer.loss_weights.items() if name in values), values


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_finetuning_loss_is_one_minus_lambda_ce_plus_lambda_kl(lam):
    model, (inputs, labels) = student(), batch()
    xe, kl = numpy_terms(model, inputs, labels)
    weights = {k: v for k, v in (("xe", 1 - lam), ("kd", lam)) if v > 0}
    trainer = FinetuneDistiller(model, registered_task(), loss_weights=weights)
    loss, values = loss_of(trainer, (inputs, labels))
    np.testing.assert_allclose(float(values["xe"]), xe, rtol=1e-5)  # the labelled examples only
    np.testing.assert_allclose(float(values["kd"]), kl, rtol=1e-5)  # every example
    np.testing.assert_allclose(loss, (1 - lam) * xe + lam * kl, rtol=1e-5)
    if lam == 0:  # the supervised trainer's loss on the same batch
        plain, _ = loss_of(
            SupervisedTrainer(model, registered_task(), label_smoothing=0.0),
            ({k: v for k, v in inputs.items() if k != "teacher_probs"}, labels),
        )
        np.testing.assert_allclose(loss, plain, rtol=1e-6)


def test_validation_batches_without_the_teacher_column_report_the_task_terms():
    model, (inputs, labels) = student(), batch()
    trainer = FinetuneDistiller(model, registered_task(), loss_weights={"xe": 0.5, "kd": 0.5})
    terms, tokens = trainer.compute_terms(
        ({k: v for k, v in inputs.items() if k != "teacher_probs"}, labels), training=False
    )
    assert set(terms) == {"xe", "nll"} and float(tokens) == inputs["padding_mask"].sum()


def numpy_divergence(name, p, log_q, beta=0.5):
    """Per row: the teacher ``p`` against the student ``q = exp(log_q)``, as the papers write them."""
    q = np.exp(log_q)
    if name == "reverse_kl":
        return (q * (log_q - np.log(p))).sum(-1)
    if name == "jsd":
        m = beta * p + (1 - beta) * q
        return beta * (p * np.log(p / m)).sum(-1) + (1 - beta) * (q * np.log(q / m)).sum(-1)
    return 0.5 * np.abs(p - q).sum(-1)  # tvd


@pytest.mark.parametrize("name, options", [("reverse_kl", {}), ("jsd", {"beta": 0.3}), ("tvd", {})])
def test_finetuning_distils_with_the_divergence_the_section_names(name, options):
    from tfkd.distillation.divergences import Divergence
    from tfkd.methods.two_stage.sections import FinetuneSpec

    model, (inputs, labels) = student(), batch()
    logits = np.asarray(model({"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]}), "float64")
    log_q = logits - logits.max(-1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(-1, keepdims=True))
    expected = numpy_divergence(name, inputs["teacher_probs"].astype("float64"), log_q, **options).mean()
    section = FinetuneSpec.model_validate({"lambda": 0.5, "divergence": name, **options})
    trainer = FinetuneDistiller(model, registered_task(), loss_weights={"kd": 1.0}, divergence=Divergence.of(section))
    _, values = loss_of(trainer, (inputs, labels))
    np.testing.assert_allclose(float(values["kd"]), expected, rtol=1e-5)
    _, forward = loss_of(FinetuneDistiller(model, registered_task(), loss_weights={"kd": 1.0}), (inputs, labels))
    assert abs(float(forward["kd"]) - expected) > 1e-3  # not the default's KL by another name
