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


class PathStage(CountingStage):
    """Reads a file whose path is in its config (as a method's extra text is)."""

    def __init__(self, name, path):
        super().__init__(name)
        self.path = path

    def config(self, spec):
        return {"text": self.path}


def test_the_run_spec_describes_what_the_run_holds(tmp_path):
    from tfkd.pipeline import open_run  # noqa: F401  (the reader of these files)

    spec = make(tmp_path)
    runner = Runner(spec, stages())
    runner.run(["vocab", "train"], None)
    run_spec = os.path.join(runner.run_dir, "spec.yaml")
    assert load_spec(run_spec).train.steps == 10
    assert load_spec(os.path.join(runner.stage_dir("train"), "spec.yaml")).train.steps == 10
    # a later command that finishes nothing (here: only a done stage, with other settings)
    # leaves both as they were
    Runner(make(tmp_path, ["train.steps=41"]), stages()).run(["vocab"], None)
    assert load_spec(run_spec).train.steps == 10
    # the stage that finishes rewrites the run's spec; each finished stage keeps its own
    Runner(make(tmp_path, ["train.steps=41"]), stages()).run(["vocab", "train"], None)
    assert load_spec(run_spec).train.steps == 41
    assert load_spec(os.path.join(runner.stage_dir("train"), "spec.yaml")).train.steps == 41
    assert load_spec(os.path.join(runner.stage_dir("vocab"), "spec.yaml")).train.steps == 10


def test_a_run_that_fails_before_any_work_leaves_no_folder(tmp_path):
    class Broken(CountingStage):
        def run(self, context, workdir):
            raise StageError("no teacher here")

    runner = Runner(make(tmp_path), [CountingStage("vocab"), Broken("train", ("vocab",))])
    with pytest.raises(StageError):
        runner.run(["train"], None)  # needs vocab, not done: nothing starts
    assert not os.path.exists(runner.run_dir)
    with pytest.raises(StageError):
        Runner(make(tmp_path), [Broken("vocab")]).run(["vocab"], None)
    assert not os.path.exists(runner.run_dir)
    # with a finished stage the folder stays, the failed stage's empty partial folder does not
    runner = Runner(make(tmp_path), [CountingStage("vocab"), Broken("train", ("vocab",))])
    with pytest.raises(StageError):
        runner.run(["vocab", "train"], None)
    assert sorted(os.listdir(runner.run_dir)) == ["log.txt", "origin.json", "spec.yaml", "vocab"]


def test_log_txt_keeps_every_command_s_lines_and_its_error(tmp_path):
    import logging

    class Broken(CountingStage):
        def run(self, context, workdir):
            logging.getLogger("tfkd").info("half way")
            with open(os.path.join(workdir, "checkpoint"), "w") as f:
                f.write("resumable")
            raise StageError("the loss became nan at step 3")

    runner = Runner(make(tmp_path), [CountingStage("vocab"), Broken("train", ("vocab",), ("steps",))])
    with pytest.raises(StageError):
        runner.run(["vocab", "train"], None)
    Runner(make(tmp_path), stages()).run(["vocab", "train"], None)
    lines = open(os.path.join(runner.run_dir, "log.txt")).read().splitlines()
    messages = [line.split(" ", 3)[-1] for line in lines if not line.startswith("---")]
    assert len([line for line in lines if line.startswith("--- ")]) == 2  # one header per command
    assert "stage vocab: running into" in messages[0]
    assert "half way" in messages
    assert "error: the loss became nan at step 3" in lines
    assert "stage train: resuming partial work in" in " ".join(messages)
    assert messages[-1].startswith("stage train: done in")
    assert all("\x1b" not in line for line in lines)


def test_the_same_files_named_two_ways_give_the_same_keys(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "text.txt").write_text("a sentence\n")
    (tmp_path / "link").symlink_to(data)
    keys = []
    for path in ("data/text.txt", str(data / "text.txt"), "link/../data/text.txt", str(tmp_path / "link" / "text.txt")):
        old = os.getcwd()
        os.chdir(tmp_path)
        try:
            from tfkd.spec import LocalPath  # paths in specs are stored absolute
            import pydantic

            absolute = pydantic.TypeAdapter(LocalPath).validate_python(path)
            keys.append(Runner(make(tmp_path), [PathStage("vocab", absolute)]).key("vocab"))
        finally:
            os.chdir(old)
    assert len(set(keys)) == 1
    # by content: a changed file changes the key
    (data / "text.txt").write_text("another sentence\n")
    assert Runner(make(tmp_path), [PathStage("vocab", str(data / "text.txt"))]).key("vocab") != keys[0]
