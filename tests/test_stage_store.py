"""TFKD_STAGE_STORE: finished stages shared between runs by their key, computed once."""

import json
import os
import threading
import time

import pytest

from tfkd.plan import PlannedStage, RunPlan
from tfkd.runner import Runner, Stage, StageError
from tfkd.spec import load_spec
from tfkd.stage_store import ENV

SPEC = """\
version: 1
name: {name}
run_dir: {run_dir}
data: {{dir: /nowhere, src_lang: de, tgt_lang: en}}
student: {{kind: transformer}}
train: {{steps: {steps}}}
"""


class WritingStage(Stage):
    """Writes its name and the run's name; ``hold`` keeps it running until set."""

    def __init__(self, name, depends=(), hold=None):
        self.name, self.depends, self.hold = name, depends, hold
        self.calls = 0

    def config(self, spec):
        return {"steps": spec.train.steps} if self.name == "train" else {}

    def run(self, context, workdir):
        self.calls += 1
        if self.hold is not None:
            assert self.hold.wait(30)
        with open(os.path.join(workdir, "out.txt"), "w") as f:
            f.write(f"{self.name} of {context}")
        return {"made_by": context}


def runner(tmp_path, name, steps=10, hold=None, worker=None):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, run_dir=tmp_path / "runs", steps=steps))
    stages = [WritingStage("vocab"), WritingStage("train", ("vocab",), hold=hold)]
    plan = RunPlan([PlannedStage(s.name, tuple(s.depends), s) for s in stages])
    return Runner(load_spec(str(path)), plan, worker=worker), stages


def test_a_second_run_takes_every_equal_stage_from_the_store_with_its_own_spec(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(ENV, str(tmp_path / "store"))
    first, first_stages = runner(tmp_path, "first")
    first.run(["vocab", "train"], "first")
    second, second_stages = runner(tmp_path, "second")
    with caplog.at_level("INFO", logger="tfkd"):
        results = second.run(["vocab", "train"], "second")
    assert [s.calls for s in first_stages] == [1, 1] and [s.calls for s in second_stages] == [0, 0]
    assert results["train"]["made_by"] == "first"  # the stored stage's own results and files
    assert open(os.path.join(second.stage_dir("train"), "out.txt")).read() == "train of first"
    assert "name: second" in open(os.path.join(second.stage_dir("train"), "spec.yaml")).read()
    assert "name: second" in open(os.path.join(second.run_dir, "spec.yaml")).read()
    marker = json.load(open(os.path.join(second.stage_dir("train"), "stage.json")))
    assert marker["key"] == second.key("train") == first.key("train")
    assert not os.path.exists(second.stage_dir("train") + ".partial")
    assert "stage train: taken from the stage store" in caplog.text
    # a changed input is another key: computed, and kept beside the first
    third, third_stages = runner(tmp_path, "third", steps=20)
    third.run(["vocab", "train"], "third")
    assert [s.calls for s in third_stages] == [0, 1]
    assert open(os.path.join(third.stage_dir("train"), "out.txt")).read() == "train of third"


def test_without_the_variable_or_on_a_multi_worker_run_there_is_no_store(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    runner(tmp_path, "first")[0].run(["vocab", "train"], "first")
    second, stages = runner(tmp_path, "second")
    second.run(["vocab", "train"], "second")
    assert [s.calls for s in stages] == [1, 1] and not (tmp_path / "store").exists()
    monkeypatch.setenv(ENV, str(tmp_path / "store"))
    from tfkd.distribute import WorkerRole

    chief = WorkerRole(index=0, count=2, chief=True, task="chief:0")
    assert runner(tmp_path, "third", worker=chief)[0].store is None


def test_two_runs_needing_one_stage_at_once_compute_it_once(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "store"))
    hold = threading.Event()
    first, first_stages = runner(tmp_path, "first", hold=hold)
    second, second_stages = runner(tmp_path, "second")
    errors = []

    def run(r, name):
        try:
            r.run(["vocab", "train"], name)
        except BaseException as e:  # noqa: BLE001 (reported by the assert below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(first, "first"))]
    threads[0].start()
    deadline = time.time() + 30
    while first_stages[1].calls == 0 and time.time() < deadline:  # the first is inside train
        time.sleep(0.05)
    threads.append(threading.Thread(target=run, args=(second, "second")))
    threads[1].start()
    time.sleep(0.5)
    assert second_stages[1].calls == 0 and not os.path.exists(second.stage_dir("train"))  # it waits
    hold.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert first_stages[1].calls == 1 and second_stages[1].calls == 0
    assert open(os.path.join(second.stage_dir("train"), "out.txt")).read() == "train of first"


def test_a_store_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(ENV, str(blocker / "store"))
    r, _ = runner(tmp_path, "first")
    with pytest.raises(
        StageError, match=r"^TFKD_STAGE_STORE=.*a_file/store: cannot write the stage store \(Not a directory\)$"
    ):
        r.run(["vocab"], "first")
