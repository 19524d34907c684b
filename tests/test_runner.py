"""Stage markers: skipping, rerunning on config change, atomic rename, resumption."""

import json
import os

import pytest

from tfkd.runner import Runner, Stage, StageError
from tfkd.spec import load_spec

SPEC = """\
version: 1
name: runner_test
run_dir: {run_dir}
data: {{dir: /nowhere, src_lang: de, tgt_lang: en}}
student: {{kind: transformer}}
train: {{steps: 10}}
"""


class CountingStage(Stage):
    def __init__(self, name, depends=(), key_fields=(), fail_once=False):
        self.name = name
        self.depends = depends
        self.key_fields = key_fields
        self.calls = 0
        self.fail_once = fail_once

    def config(self, spec):
        return {field: getattr(spec.train, field) for field in self.key_fields}

    def run(self, context, workdir):
        self.calls += 1
        progress = os.path.join(workdir, "progress")
        resumed = os.path.exists(progress)
        with open(progress, "w") as f:
            f.write("half")
        if self.fail_once and not resumed:
            raise KeyboardInterrupt  # stands in for a kill mid-stage
        with open(os.path.join(workdir, "out.txt"), "w") as f:
            f.write(self.name)
        return {"resumed": resumed}


def make(tmp_path, overrides=()):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(run_dir=tmp_path / "runs"))
    return load_spec(str(path), list(overrides))


def stages():
    return [CountingStage("vocab"), CountingStage("train", ("vocab",), ("steps",)),
            CountingStage("evaluate", ("train",))]


def test_finished_stages_are_skipped(tmp_path):
    spec = make(tmp_path)
    first = stages()
    Runner(spec, first).run(["vocab", "train", "evaluate"], None)
    assert [s.calls for s in first] == [1, 1, 1]
    again = stages()
    runner = Runner(spec, again)
    runner.run(["vocab", "train", "evaluate"], None)
    assert [s.calls for s in again] == [0, 0, 0]
    marker = json.load(open(os.path.join(runner.stage_dir("train"), "stage.json")))
    assert marker["key"] == runner.key("train")
    assert not os.path.exists(runner.stage_dir("train") + ".partial")


def test_changing_a_stage_config_reruns_it_and_everything_downstream(tmp_path):
    Runner(make(tmp_path), stages()).run(["vocab", "train", "evaluate"], None)
    changed = stages()
    Runner(make(tmp_path, ["train.steps=11"]), changed).run(["vocab", "train", "evaluate"], None)
    assert [s.calls for s in changed] == [0, 1, 1]
    # a key it does not read changes nothing
    same = stages()
    Runner(make(tmp_path, ["train.steps=11", "train.seed=9"]), same).run(["vocab", "train", "evaluate"], None)
    assert [s.calls for s in same] == [0, 0, 0]


def test_a_killed_stage_is_not_taken_as_finished_and_resumes(tmp_path):
    spec = make(tmp_path)
    failing = [CountingStage("vocab"), CountingStage("train", ("vocab",), fail_once=True)]
    runner = Runner(spec, failing)
    with pytest.raises(KeyboardInterrupt):
        runner.run(["vocab", "train"], None)
    assert not os.path.exists(runner.stage_dir("train"))
    assert os.path.exists(os.path.join(runner.stage_dir("train") + ".partial", "progress"))
    assert not runner.is_done("train")
    results = Runner(spec, failing).run(["vocab", "train"], None)
    assert results["train"]["resumed"] is True
    assert open(os.path.join(runner.stage_dir("train"), "out.txt")).read() == "train"


def test_partial_work_of_another_config_is_discarded(tmp_path):
    spec = make(tmp_path)
    failing = [CountingStage("vocab"), CountingStage("train", ("vocab",), ("steps",), fail_once=True)]
    with pytest.raises(KeyboardInterrupt):
        Runner(spec, failing).run(["vocab", "train"], None)
    other = [CountingStage("vocab"), CountingStage("train", ("vocab",), ("steps",), fail_once=True)]
    with pytest.raises(KeyboardInterrupt):  # fresh partial dir, so it "fails" again
        Runner(make(tmp_path, ["train.steps=3"]), other).run(["vocab", "train"], None)


def test_missing_dependency_is_a_clear_error(tmp_path):
    with pytest.raises(StageError, match='stage "train" needs stage "vocab", which is not done'):
        Runner(make(tmp_path), stages()).run(["train"], None)
