"""The stage plan: ``train.seeds`` copies every student's train and evaluate stages once per
extra seed, the teacher's stages stay single, and the first seed's stages keep their names and
keys (a run trained before seeds were asked for is reused)."""

import os

import pytest
from helpers import REPO

from tfkd.errors import SpecError
from tfkd.plan import plan_run, seed_of_stage, seed_stage_name
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
