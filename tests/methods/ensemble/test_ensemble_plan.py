"""The ensemble's stage plan (each teacher cached once, after the stage that trains it; a
combined cache right before a student with several teachers; seeds copy the students, not the
teachers) and its one-line errors for teachers that cannot teach."""

import os

import pytest
from helpers import REPO

from tfkd.errors import SpecError
from tfkd.plan import plan_run
from tfkd.runner import Runner
from tfkd.spec import load_spec

SPEC = os.path.join(REPO, "specs", "ensemble_multi30k.yaml")


def line_of(text):
    with open(SPEC) as f:
        return next(i for i, line in enumerate(f, 1) if text in line)


def test_each_teacher_is_cached_once_after_its_stage_and_each_student_reads_its_teachers(data_dir):
    spec = load_spec(SPEC, ["train.seeds=[1,2,3]"])
    plan = plan_run(spec)
    names = plan.names
    assert names.index("big_evaluate") + 1 == names.index("teacher_cache_big")
    assert plan["teacher_cache_big"].depends == ("vocab", "big")
    assert plan["teacher_cache"].depends == ("vocab", "teacher_finetune")
    assert set(plan["train_soft_targets"].depends) == {"teacher_cache", "teacher_cache_big"}
    assert names.index("train_soft_targets") + 1 == names.index("train")
    # one-teacher students read that teacher's cache; seeds copy the students and what they read
    reading = (("bert_only", "teacher_cache"), ("big_only", "teacher_cache_big"), ("train", "train_soft_targets"))
    for student, reads in reading:
        for name in (student, f"{student}-s2", f"{student}-s3"):
            assert reads in plan[name].depends and names.index(name) > names.index(reads), name
    # the teacher trained as a variant runs once (its train.seeds: [1]); so do the caches
    assert "big-s2" not in plan and "teacher_cache_big-s2" not in plan and "train_soft_targets-s2" not in plan
    assert names.count("teacher_cache_big") == 1


def test_adding_a_teacher_keeps_the_other_teachers_caches(data_dir):
    two = load_spec(SPEC)
    three = load_spec(SPEC, ["distill.teachers.baseline={weight: 1.0, temperature: 2.0}"])
    runners = Runner(two, plan_run(two)), Runner(three, plan_run(three))
    for name in ("teacher_cache", "teacher_cache_big", "bert_only", "big_only"):
        assert runners[0].key(name) == runners[1].key(name), name
    assert "teacher_cache_baseline" in plan_run(three) and "teacher_cache_baseline" not in plan_run(two)
    assert runners[0].key("train_soft_targets") != runners[1].key("train_soft_targets")
    # the weights are normalised over the teachers: 0.5, 0.5 and 1.0
    assert plan_run(three)["train_soft_targets"].kwargs["weights"] == pytest.approx([0.25, 0.25, 0.5])


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["distill.teachers.bigg={weight: 1.0}"],
            r'--set distill.teachers.bigg=\{weight: 1.0\}: distill.teachers.bigg: unknown teacher "bigg" '
            r'\(did you mean "big"\?\); expected cmlm, a train stage before train \(baseline, big, bert_only, '
            r"big_only\), or the path of an exported model version folder \(<run>/export/<model>/<version>\)$",
        ),
        (
            ["distill.teachers.train={weight: 1.0}"],
            r"distill.teachers.train: stage train cannot teach itself; expected cmlm, a train stage before train ",
        ),
        (
            ["variants.big_only={distill.teachers: {big: {temperature: 2.0}}}"],
            r"--set variants.big_only=\{distill.teachers: \{big: \{temperature: 2.0\}\}\}: variants.big_only: "
            r"distill.teachers.big: teacher big has one cache "
            r'\(teacher_cache_big\), which .* reads with \{"top_k": 8, "temperature": 1.0, "batch_size": 64\}; '
            "give it the same settings",
        ),
        (
            ["distill.teachers.cmlm.temperature=2.0"],
            r"distill.teachers.cmlm.temperature: the cmlm teacher's temperature is distill.cache.temperature",
        ),
        (
            ["data.target_tokenizer={kind: learned}"],
            r"data.target_tokenizer.kind: the cmlm teacher's vocabulary is not the student's",
        ),
    ],
)
def test_a_teacher_that_cannot_teach_is_a_one_line_error(flags, message, data_dir):
    with pytest.raises(SpecError) as error:
        load_spec(SPEC, flags)
    assert "\n" not in str(error.value)
    assert error.match(message), str(error.value)


def test_a_teacher_declared_after_its_student_is_named_at_the_students_line(tmp_path, data_dir):
    text = (
        open(SPEC)
        .read()
        .replace(
            "  bert_only: {distill.teachers: {cmlm: {weight: 1.0}}}",
            "  bert_only: {distill.teachers: {late: {weight: 1.0}}}\n"
            "  late: {train.steps: 10, distill: {method: supervised}}",
        )
    )
    path = tmp_path / "late.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as error:
        load_spec(str(path))
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("  bert_only:"))
    assert str(error.value) == (
        f"{path}:{line}: variants.bert_only: distill.teachers.late: stage late runs after bert_only, which reads "
        "its soft targets; declare late before bert_only in variants, or expected cmlm, a train stage before "
        "bert_only (baseline, big), or the path of an exported model version folder (<run>/export/<model>/<version>)"
    )


def test_an_exported_teacher_is_cached_after_the_methods_stages_keyed_by_its_files(data_dir):
    spec = load_spec(SPEC, ["distill.teachers.ext={source: /models/big/3, temperature: 2.0}"])
    plan = plan_run(spec)
    names = plan.names
    assert names.index("teacher_cache") + 1 == names.index("teacher_cache_ext")
    assert plan["teacher_cache_ext"].depends == ("vocab",)
    assert plan["teacher_cache_ext"].kwargs["path"] == "/models/big/3"
    assert "teacher_cache_ext" in plan["train_soft_targets"].depends
    # a student reading the same export with other settings: one cache, one error
    with pytest.raises(SpecError, match="teacher ext has one cache \\(teacher_cache_ext\\), which train reads"):
        load_spec(
            SPEC,
            [
                "distill.teachers.ext={source: /models/big/3}",
                "variants.big_only={distill.teachers: {ext: {source: /models/big/3, top_k: 4}}}",
            ],
        )


def test_a_trained_teachers_cache_is_keyed_by_the_precision_it_runs_in_not_by_its_decoding(data_dir):
    """``decode.precision`` of the teacher's variant decides the forward passes its cache holds;
    the rest of its ``decode`` section (beam search) does not enter them."""
    big = "variants.big={distill: {method: supervised}, student.hidden_dim: 512, train.seeds: [1], %s}"
    keys = {}
    for name, setting in (
        ("plain", "decode.beam_size: 4"),
        ("beam", "decode.beam_size: 2"),
        ("bf16", "decode.precision: bfloat16"),
    ):
        spec = load_spec(SPEC, [big % setting])
        keys[name] = Runner(spec, plan_run(spec)).key("teacher_cache_big")
    assert keys["plain"] == keys["beam"] != keys["bf16"]
