"""The stage plan: ``train.seeds`` copies every student's train and evaluate stages once per
extra seed, the teacher's stages stay single, and the first seed's stages keep their names and
keys (a run trained before seeds were asked for is reused)."""

import os

import pytest
from helpers import REPO

from tfkd.errors import SpecError
from tfkd.methods import Method, MethodSpec
from tfkd.plan import PlannedStage, PlannedStudent, plan_run, seed_of_stage, seed_stage_name
from tfkd.registry import register
from tfkd.spec import load_spec

QUICKSTART = os.path.join(REPO, "specs", "quickstart.yaml")


def test_seed_stage_names_round_trip():
    assert seed_stage_name("baseline_evaluate", 3) == "baseline_evaluate-s3"
    assert seed_of_stage("baseline_evaluate-s3") == ("baseline_evaluate", 3)
    assert seed_of_stage("train") == ("train", None)
    assert seed_of_stage("my-stage") == ("my-stage", None)


def test_seeds_copy_each_students_stages_and_not_the_teachers(data_dir):
    spec = load_spec(QUICKSTART, ["train.seeds=[1,2,3]"])
    plan = plan_run(spec)
    assert plan.names.count("teacher_finetune") == 1 and plan.names.count("teacher_cache") == 1
    for train, evaluate in (("baseline", "baseline_evaluate"), ("train", "evaluate")):
        for seed in (2, 3):
            copy, copy_evaluate = seed_stage_name(train, seed), seed_stage_name(evaluate, seed)
            assert plan[copy].seed == seed and plan[copy].role == "train"
            assert plan[copy].depends == plan[train].depends
            assert plan[copy_evaluate].depends == (copy,)
            assert plan.names.index(copy_evaluate) > plan.names.index(copy) > plan.names.index(evaluate)
    # the spec lists its stages: a listed student brings its seeds' copies
    requested = plan.requested(spec=spec)
    assert {"train-s2", "evaluate-s3", "baseline-s3"} <= set(requested)
    assert "teacher_cache-s2" not in plan


def test_a_students_stage_named_with_its_first_seed_is_that_stage_alone(data_dir):
    """Seeds split between commands (one process a seed): ``train-s1`` is the first seed's
    ``train`` without the copies that ``train`` brings."""
    spec = load_spec(QUICKSTART, ["train.seeds=[1,2,3]"])
    plan = plan_run(spec)
    assert plan.requested(["train", "evaluate"], spec) == [
        "train",
        "evaluate",
        "train-s2",
        "evaluate-s2",
        "train-s3",
        "evaluate-s3",
    ]
    assert plan.requested(["train-s1", "evaluate-s1"], spec) == ["train", "evaluate"]
    assert plan.requested(["baseline-s1", "train-s3", "evaluate-s3"], spec) == ["baseline", "train-s3", "evaluate-s3"]
    # the teacher's stages have no seeds; a seed the student does not train is no stage
    for name in ("teacher_cache-s1", "train-s4"):
        with pytest.raises(SpecError, match=f"unknown stage '{name}'"):
            plan.requested([name], spec)
    # seeds that start elsewhere name their own first seed
    other = load_spec(QUICKSTART, ["train.seeds=[7,8]", "train.seed=7"])
    assert plan_run(other).requested(["train-s7"], other) == ["train"]
    with pytest.raises(SpecError, match="unknown stage 'train-s1'"):
        plan_run(other).requested(["train-s1"], other)
    # one seed: nothing to split, and no such name
    plain = load_spec(QUICKSTART)
    with pytest.raises(SpecError, match="unknown stage 'train-s1'"):
        plan_run(plain).requested(["train-s1"], plain)


def test_the_first_seed_keeps_the_keys_the_other_seeds_train_with_their_own(data_dir):
    from tfkd.runner import Runner

    plain = load_spec(QUICKSTART)
    seeded = load_spec(QUICKSTART, ["train.seeds=[1,2]"])
    plain_runner, seeded_runner = Runner(plain, plan_run(plain)), Runner(seeded, plan_run(seeded))
    for name in ("vocab", "teacher_finetune", "teacher_cache", "baseline", "train", "evaluate"):
        assert seeded_runner.key(name) == plain_runner.key(name), name
    assert seeded_runner.key("train-s2") != seeded_runner.key("train")
    stage = seeded_runner.stages["train-s2"]
    assert stage.view(seeded).train.seed == 2 and stage.view(seeded).train.seeds == [1, 2]
    assert seeded_runner.stages["baseline-s2"].view(seeded).train.seed == 2


def test_the_first_seed_is_the_runs_seed(data_dir):
    # a spec that does not set train.seed takes the first of train.seeds; one that does must agree
    assert load_spec(os.path.join(REPO, "specs", "lightpaff_sst2_cpu.yaml"), ["train.seeds=[5,6]"]).train.seed == 5
    with pytest.raises(SpecError, match=r"quickstart.yaml:\d+: train: seed \(4\) and seeds"):
        load_spec(QUICKSTART, ["train.seeds=[1,2]", "train.seed=4"])
    with pytest.raises(SpecError, match="expected different seeds"):
        load_spec(QUICKSTART, ["train.seeds=[1,1]"])
    with pytest.raises(SpecError, match="-sN"):
        load_spec(QUICKSTART, ["variants={alpha-s2: {distill.alpha: 0.2}}"])


# ---------------------------------------------------------------------------- method plan hooks


class _ReadsStudentSpec(MethodSpec):
    method: str = "test_reads_student"
    reads: str = "baseline"  # a train stage of the run whose student a stage reads


class _ReadsStudentMethod(Method):
    """A method with a stage that reads another student of the run (``reads``): placed by
    :meth:`extend_plan` after that student, checked by :meth:`check_plan`."""

    name = "test_reads_student"
    spec_schema = _ReadsStudentSpec

    def extend_plan(self, context, plan):
        reads = context.spec.distill.reads
        if reads not in plan:
            return
        position = plan.names.index(reads) + 1
        plan.insert(position, PlannedStage("read_student", ("vocab", reads), "unused:Stage"))
        for own in plan.with_role("train"):
            if plan[own].method == self.name:
                plan.add_dependency(own, "read_student")

    def check_plan(self, context, plan):
        reads = context.spec.distill.reads
        if reads not in plan:
            return [(None, ("distill", "reads"), f"no train stage {reads}")]
        if plan.names.index(reads) > plan.names.index("read_student") or any(
            plan.names.index(s) < plan.names.index(reads)
            for s in plan.with_role("train")
            if plan[s].method == self.name and s != reads
        ):
            variant = next(s for s in plan.with_role("train") if plan[s].method == self.name)
            return [(variant, ("distill", "reads"), f"runs before stage {reads}, which it reads")]
        return []

    def make_trainer(self, context, student):
        raise NotImplementedError


register("method", "test_reads_student")(_ReadsStudentMethod())

READS_SPEC = """\
version: 1
name: reads
data:
  {{dir: {data}/multi30k_deen, src_lang: de, tgt_lang: en,
   source_tokenizer: {{kind: learned}}, target_tokenizer: {{kind: learned}}}}
distill:
  method: test_reads_student
  reads: {reads}
variants:
  early: {{distill.reads: {reads}}}
  big: {{student.hidden_dim: 64, distill: {{method: supervised}}, train.seeds: [1]}}
student: {{kind: transformer, hidden_dim: 32, intermediate_dim: 64, num_heads: 2}}
train: {{seeds: [1, 2]}}
"""


def _reads_spec(tmp_path, data_dir, reads):
    path = tmp_path / "reads.yaml"
    path.write_text(READS_SPEC.format(data=data_dir, reads=reads))
    return str(path)


def test_a_methods_stage_goes_after_the_student_it_reads_and_seeds_copy_the_dependency(tmp_path, data_dir):
    spec = load_spec(_reads_spec(tmp_path, data_dir, "baseline"))
    plan = plan_run(spec)
    names = plan.names
    assert names.index("baseline") < names.index("read_student") < names.index("early") < names.index("train")
    for stage in ("early", "train", "early-s2", "train-s2"):
        assert "read_student" in plan[stage].depends, stage
    assert "read_student" not in plan["big"].depends and names.count("read_student") == 1
    # a variant with its own train.seeds ([1]: a teacher trained once) is not copied per seed
    assert "big-s2" not in plan and "big_evaluate-s2" not in plan and "baseline-s2" in plan


def test_a_methods_plan_check_is_the_one_line_error_at_the_variants_setting(tmp_path, data_dir):
    # the variant early runs before big, whose student it would read
    with pytest.raises(SpecError) as error:
        load_spec(_reads_spec(tmp_path, data_dir, "big"))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'reads.yaml'}:10: variants.early: distill.reads: runs before stage big")
    with pytest.raises(SpecError, match=r"reads.yaml:8: distill.reads: no train stage nowhere"):
        load_spec(_reads_spec(tmp_path, data_dir, "nowhere"))


def test_the_plan_knows_its_students_their_roles_and_seeds(data_dir):
    """One view of the students for every reader (comparison, report, CLI): the baseline, each
    variant with the seeds of its own spec (the ensemble's wide teacher trains once), the
    spec's student; a sweep's candidates are students of their own, not seeds of ``train``."""
    spec = load_spec(os.path.join(REPO, "specs", "ensemble_multi30k.yaml"), ["train.seeds=[1,2]"])
    students = {s.name: s for s in plan_run(spec).students(spec)}
    assert list(students)[0] == "baseline" and list(students)[-1] == "train"
    assert students["baseline"] == PlannedStudent(
        "baseline",
        "baseline_evaluate",
        "baseline",
        None,
        ((1, "baseline", "baseline_evaluate"), (2, "baseline-s2", "baseline_evaluate-s2")),
    )
    assert students["big"].role == "variant" and students["big"].seeds == ((1, "big", "big_evaluate"),)
    assert students["train"].role == "student" and [s for s, _, _ in students["train"].seeds] == [1, 2]
    swept = load_spec(QUICKSTART, ["train.seeds=[1,2]", "sweep={grid: {distill.alpha: [0.3, 0.5]}}"])
    students = {s.name: s for s in plan_run(swept).students(swept)}
    assert students["train"].seeds == ((1, "train", "evaluate"), (2, "train-s2", "evaluate-s2"))
    candidates = [s for s in students.values() if s.role == "variant"]
    assert len(candidates) == 2 and all([t for _, t, _ in c.seeds] == [c.name, f"{c.name}-s2"] for c in candidates)
