"""LightPAFF for GPT-2 (``two_stage`` on ``task: language_model``): the causal-LM KD loss
against NumPy, lambda 0 is MLE, the stages the spec's settings add, and its one-line errors."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import GENERATIVE_METHOD_STAGES, REPO, check_lambda_zero_is_mle, check_per_position_kd

from tfkd import registry
from tfkd.context import RunContext
from tfkd.methods.two_stage.finetune import FinetuneDistiller
from tfkd.models.gpt2_lm import GPT2LM
from tfkd.plan import plan_run
from tfkd.spec import SpecError, load_spec
from tfkd.tasks.language_model import LanguageModelTask
from tfkd.tasks.language_model.data import NO_LABEL

CPU_SPEC = os.path.join(REPO, "specs", "lightpaff_gpt2_wikitext2_cpu.yaml")
PAPER_SPEC = os.path.join(REPO, "specs", "lightpaff_gpt2_wikitext2.yaml")


def model(seed, layers=1):
    keras.utils.set_random_seed(seed)
    lm = GPT2LM(
        vocabulary_size=40,
        num_layers=layers,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        dropout=0.0,
        max_sequence_length=16,
    )
    lm({"token_ids": tf.ones([1, 2], tf.int32), "padding_mask": tf.ones([1, 2], tf.bool)})
    return lm


def batch():
    token_ids = np.array([[0, 5, 9, 3, 7], [0, 8, 2, 0, 0]], np.int32)
    labels = np.array([[5, 9, 3, 7, 1], [8, 2, 0, NO_LABEL, NO_LABEL]], np.int32)
    return {"token_ids": token_ids, "padding_mask": labels != NO_LABEL}, labels


@pytest.mark.parametrize("lam", [0.4, 1.0])
def test_causal_kd_loss_is_one_minus_lambda_mle_plus_lambda_kl_over_every_position(lam):
    student, teacher = model(0), model(1, layers=2)
    inputs, labels = batch()
    trainer = FinetuneDistiller(student, LanguageModelTask(), loss_weights={"xe": 1 - lam, "kd": lam}, teacher=teacher)
    kept = labels != NO_LABEL
    assert kept.sum() == 8
    check_per_position_kd(trainer, student, teacher, inputs, labels, kept, lam)


def test_lambda_zero_is_mle_and_never_runs_the_teacher():
    method = registry.lookup("method", "two_stage")
    spec = load_spec(CPU_SPEC, ["distill.finetune.lambda=0", "variants=null"])
    assert method.loss_weights(spec.distill) == {"xe": 1.0}
    inputs, labels = batch()
    check_lambda_zero_is_mle(lambda: model(0), LanguageModelTask(), inputs, labels, [2, 5, 40])


def test_the_cpu_spec_pretrains_its_teacher_and_compares_table_3_rows_by_default():
    spec = load_spec(CPU_SPEC)
    assert plan_run(spec).with_role("method") == GENERATIVE_METHOD_STAGES
    assert plan_run(spec).defaults() == [
        "vocab",
        *GENERATIVE_METHOD_STAGES,
        "baseline",
        "baseline_evaluate",
        "gpt2_small",
        "gpt2_small_evaluate",
        "train",
        "evaluate",
    ]
    method = registry.lookup("method", "two_stage")
    # the fine-tuned teacher runs online: no teacher_predictions stage, no batch columns
    assert method.train_inputs(RunContext(spec)) == ("pretrain_kd", "teacher_finetune")
    assert method.train_inputs(RunContext(spec.variant("gpt2_small"))) == ("pretrain_mle",)
    assert method.loss_weights(spec.distill) == {"xe": 0.5, "kd": 0.5}
    # no distillation anywhere: no teacher stage at all
    plain = load_spec(CPU_SPEC, ["distill.pretrain.lambda=0", "distill.finetune.lambda=0", "variants=null"])
    assert plan_run(plain).with_role("method") == ["pretrain_mle"]


def test_the_paper_spec_names_a_released_gpt2_instead_of_pretraining_one():
    spec = load_spec(PAPER_SPEC)
    assert spec.teacher.kind == "gpt2" and spec.teacher.checkpoint == "gpt2_medium_en"
    assert spec.distill.teacher_pretrain is None and "teacher_pretrain" not in plan_run(spec).with_role("method")
    assert spec.data.tokenizer.kind == "teacher"


@pytest.mark.parametrize(
    "override,message",
    [
        ("distill.teacher=cache", "distill.teacher: causal-LM distillation runs the teacher online"),
        (
            "teacher={checkpoint: gpt2_medium_en, kind: gpt2}",
            "distill.teacher_pretrain: the spec names teacher.checkpoint",
        ),
        ("distill.teacher_pretrain=null", "distill.method: two_stage needs a teacher section"),
        ("distill.teacher_pretrain.num_heads=5", "hidden_dim (384) must be a multiple of num_heads (5)"),
        ("distill.finetune.unlabeled=x.txt", "distill.finetune.unlabeled: applies to classification only"),
        ("student.max_sequence_length=64", "student.max_sequence_length: is 64 but data.block_size is 128"),
    ],
)
def test_bad_causal_settings_are_one_line_errors(override, message):
    with pytest.raises(SpecError) as e:
        load_spec(CPU_SPEC, [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_gpt2_checkpoint_teacher_needs_its_own_vocabulary():
    with pytest.raises(SpecError, match="data.tokenizer.kind: a pretrained teacher's distributions are over its own"):
        load_spec(CPU_SPEC, ["teacher={checkpoint: gpt2_medium_en, kind: gpt2}", "distill.teacher_pretrain=null"])
    spec = load_spec(
        CPU_SPEC,
        [
            "teacher={checkpoint: gpt2_medium_en, kind: gpt2}",
            "distill.teacher_pretrain=null",
            "data.tokenizer.kind=teacher",
        ],
    )
    assert "teacher_pretrain" not in plan_run(spec).with_role("method")


def test_classification_cannot_pretrain_a_teacher_from_scratch():
    spec = os.path.join(REPO, "specs", "lightpaff_sst2_cpu.yaml")
    with pytest.raises(SpecError, match="distill.teacher_pretrain: pre-training a teacher from scratch is for causal"):
        load_spec(spec, ["distill.teacher_pretrain={text: [a.txt]}"])
