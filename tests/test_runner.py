"""Stage markers: skipping, rerunning on config change, atomic rename, resumption."""

import json
import os

import pytest

from tfkd.plan import PlannedStage, RunPlan
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


def plan_of(stages):
    """A run plan of these stage objects, each reading its ``depends``."""
    return RunPlan([PlannedStage(s.name, tuple(s.depends), s) for s in stages])


def stages():
    return [
        CountingStage("vocab"),
        CountingStage("train", ("vocab",), ("steps",)),
        CountingStage("evaluate", ("train",)),
    ]


def test_finished_stages_are_skipped(tmp_path):
    spec = make(tmp_path)
    first = stages()
    Runner(spec, plan_of(first)).run(["vocab", "train", "evaluate"], None)
    assert [s.calls for s in first] == [1, 1, 1]
    again = stages()
    runner = Runner(spec, plan_of(again))
    runner.run(["vocab", "train", "evaluate"], None)
    assert [s.calls for s in again] == [0, 0, 0]
    marker = json.load(open(os.path.join(runner.stage_dir("train"), "stage.json")))
    assert marker["key"] == runner.key("train")
    assert not os.path.exists(runner.stage_dir("train") + ".partial")


def test_changing_a_stage_config_reruns_it_and_everything_downstream(tmp_path):
    Runner(make(tmp_path), plan_of(stages())).run(["vocab", "train", "evaluate"], None)
    changed = stages()
    Runner(make(tmp_path, ["train.steps=11"]), plan_of(changed)).run(["vocab", "train", "evaluate"], None)
    assert [s.calls for s in changed] == [0, 1, 1]
    # a key it does not read changes nothing
    same = stages()
    Runner(make(tmp_path, ["train.steps=11", "train.seed=9"]), plan_of(same)).run(["vocab", "train", "evaluate"], None)
    assert [s.calls for s in same] == [0, 0, 0]


def test_a_killed_stage_is_not_taken_as_finished_and_resumes(tmp_path):
    spec = make(tmp_path)
    failing = [CountingStage("vocab"), CountingStage("train", ("vocab",), fail_once=True)]
    runner = Runner(spec, plan_of(failing))
    with pytest.raises(KeyboardInterrupt):
        runner.run(["vocab", "train"], None)
    assert not os.path.exists(runner.stage_dir("train"))
    assert os.path.exists(os.path.join(runner.stage_dir("train") + ".partial", "progress"))
    assert not runner.is_done("train")
    results = Runner(spec, plan_of(failing)).run(["vocab", "train"], None)
    assert results["train"]["resumed"] is True
    assert open(os.path.join(runner.stage_dir("train"), "out.txt")).read() == "train"


class SwallowingStage(CountingStage):
    """Stopped by SIGTERM while Keras traces or loads, which catches the StopSignal and raises
    a ValueError of its own."""

    def run(self, context, workdir):
        import signal
        import time

        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException:
            raise ValueError("Exception encountered when calling SinePositionEncoding.call()") from None


def test_a_stop_a_stage_s_code_swallowed_still_stops_the_run_and_the_stage_resumes(tmp_path):
    from tfkd.stopping import StopSignal, handling_stop_signals

    spec = make(tmp_path)
    runner = Runner(spec, plan_of([CountingStage("vocab"), SwallowingStage("train", ("vocab",))]))
    with handling_stop_signals(30), pytest.raises(StopSignal) as stopped:
        runner.run(["vocab", "train"], None)
    assert stopped.value.exit_code == 143 and runner.is_done("vocab") and not runner.is_done("train")
    again = stages()
    Runner(spec, plan_of(again)).run(["vocab", "train"], None)
    assert [s.calls for s in again[:2]] == [0, 1]  # the stopped stage runs again


def test_partial_work_of_another_config_is_discarded(tmp_path):
    spec = make(tmp_path)
    failing = [CountingStage("vocab"), CountingStage("train", ("vocab",), ("steps",), fail_once=True)]
    with pytest.raises(KeyboardInterrupt):
        Runner(spec, plan_of(failing)).run(["vocab", "train"], None)
    other = [CountingStage("vocab"), CountingStage("train", ("vocab",), ("steps",), fail_once=True)]
    with pytest.raises(KeyboardInterrupt):  # fresh partial dir, so it "fails" again
        Runner(make(tmp_path, ["train.steps=3"]), plan_of(other)).run(["vocab", "train"], None)


def test_missing_dependency_is_a_clear_error(tmp_path):
    with pytest.raises(StageError, match='stage "train" needs stage "vocab", which is not done'):
        Runner(make(tmp_path), plan_of(stages())).run(["train"], None)


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
    runner = Runner(spec, plan_of(stages()))
    runner.run(["vocab", "train"], None)
    run_spec = os.path.join(runner.run_dir, "spec.yaml")
    assert load_spec(run_spec).train.steps == 10
    assert load_spec(os.path.join(runner.stage_dir("train"), "spec.yaml")).train.steps == 10
    # a later command that finishes nothing (here: only a done stage, with other settings)
    # leaves both as they were
    Runner(make(tmp_path, ["train.steps=41"]), plan_of(stages())).run(["vocab"], None)
    assert load_spec(run_spec).train.steps == 10
    # the stage that finishes rewrites the run's spec; each finished stage keeps its own
    Runner(make(tmp_path, ["train.steps=41"]), plan_of(stages())).run(["vocab", "train"], None)
    assert load_spec(run_spec).train.steps == 41
    assert load_spec(os.path.join(runner.stage_dir("train"), "spec.yaml")).train.steps == 41
    assert load_spec(os.path.join(runner.stage_dir("vocab"), "spec.yaml")).train.steps == 10


def test_a_run_that_fails_before_any_work_leaves_no_folder(tmp_path):
    class Broken(CountingStage):
        def run(self, context, workdir):
            raise StageError("no teacher here")

    runner = Runner(make(tmp_path), plan_of([CountingStage("vocab"), Broken("train", ("vocab",))]))
    with pytest.raises(StageError):
        runner.run(["train"], None)  # needs vocab, not done: nothing starts
    assert not os.path.exists(runner.run_dir)
    with pytest.raises(StageError):
        Runner(make(tmp_path), plan_of([Broken("vocab")])).run(["vocab"], None)
    assert not os.path.exists(runner.run_dir)
    # with a finished stage the folder stays, the failed stage's empty partial folder does not
    runner = Runner(make(tmp_path), plan_of([CountingStage("vocab"), Broken("train", ("vocab",))]))
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

    runner = Runner(make(tmp_path), plan_of([CountingStage("vocab"), Broken("train", ("vocab",), ("steps",))]))
    with pytest.raises(StageError):
        runner.run(["vocab", "train"], None)
    Runner(make(tmp_path), plan_of(stages())).run(["vocab", "train"], None)
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
            import pydantic

            from tfkd.spec import LocalPath  # paths in specs are stored absolute

            absolute = pydantic.TypeAdapter(LocalPath).validate_python(path)
            keys.append(Runner(make(tmp_path), plan_of([PathStage("vocab", absolute)])).key("vocab"))
        finally:
            os.chdir(old)
    assert len(set(keys)) == 1
    # by content: a changed file changes the key
    (data / "text.txt").write_text("another sentence\n")
    assert Runner(make(tmp_path), plan_of([PathStage("vocab", str(data / "text.txt"))])).key("vocab") != keys[0]


# ----------------------------------------------------------------------------- full and read-only disks

# without the right to mount a file system, the same failures are made by patching the writers
PATCHED_RUN = r"""
import builtins, errno, os, shutil, sys
root, failure = sys.argv[1], sys.argv[2]
real_open, real_makedirs, real_usage = builtins.open, os.makedirs, shutil.disk_usage
def inside(path):
    return os.path.abspath(str(path)).startswith(root + os.sep + "train")
def refuse(path):
    raise OSError(errno.EROFS, "Read-only file system", str(path))
if failure == "full":
    shutil.disk_usage = lambda path: real_usage(path)._replace(free=4096) if inside(path) else real_usage(path)
else:
    builtins.open = lambda path, *a, **k: (
        refuse(path) if inside(path) and set(str(a[:1])) & set("wa") else real_open(path, *a, **k)
    )
    os.makedirs = lambda path, *a, **k: refuse(path) if inside(path) else real_makedirs(path, *a, **k)
from tfkd.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture
def small_filesystem(tmp_path):
    """A 4 MB tmpfs at ``tmp_path/mnt`` (``None`` when this machine does not let us mount)."""
    import subprocess

    mount = tmp_path / "mnt"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)]
    if os.environ.get("TFKD_TEST_NO_MOUNT"):  # to exercise the patched writers where mounting works
        command = ["false"]
    made = subprocess.run(command, capture_output=True)
    yield mount if made.returncode == 0 else None
    if made.returncode == 0:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["full", "read-only"])
def test_a_stage_that_cannot_write_is_one_line_and_keeps_the_finished_ones(
    tmp_path, small_filesystem, failure, data_dir
):
    import subprocess
    import sys

    from helpers import tfkd, write_spec

    base = small_filesystem or tmp_path
    spec = write_spec(tmp_path, "tiny", steps=6, every=3)
    text = open(spec).read().replace(str(tmp_path / "runs"), str(base / "runs"))
    open(spec, "w").write(text)
    args = [spec, "--set", "data.train_limit=100"]
    out = tfkd("run", *args, "--stages", "vocab", env_extra={"TFKD_DATA_DIR": data_dir})
    assert out.returncode == 0, out.stderr[-2000:]
    run = base / "runs" / "tiny"
    vocab = {name: (run / "vocab" / name).read_bytes() for name in os.listdir(run / "vocab")}
    if small_filesystem is not None:
        if failure == "full":  # fill it but for 300 kB: the vocabulary fits, a checkpoint does not
            free = os.statvfs(base).f_bavail * os.statvfs(base).f_frsize
            (base / "filler").write_bytes(b"\0" * (free - 300_000))
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(base)], check=True)
        out = tfkd("run", *args, "--stages", "vocab,train", env_extra={"TFKD_DATA_DIR": data_dir})
    else:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                PATCHED_RUN,
                str(run),
                failure.split("-")[0],
                "run",
                *args,
                "--stages",
                "vocab,train",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(os.environ, TFKD_DATA_DIR=data_dir, TFKD_QUIET_PROGRESS="1"),
        )
    assert out.returncode == 1, out.stderr[-3000:]
    last = out.stderr.splitlines()[-1]
    reason = "No space left on device" if failure == "full" else "Read-only file system"
    assert last.startswith(f"tfkd: error: stage train: {run}/train") and reason in last, out.stderr[-3000:]
    assert last.endswith("; the stages finished before it are kept")
    assert not [
        line
        for line in out.stderr.splitlines()
        if not line.startswith(("tfkd: error:", "tfkd ")) and not line[:2].isdigit()
    ], out.stderr[-3000:]  # log lines and the error, nothing else
    assert {name: (run / "vocab" / name).read_bytes() for name in os.listdir(run / "vocab")} == vocab
    again = tfkd("run", *args, "--stages", "vocab", env_extra={"TFKD_DATA_DIR": data_dir})
    assert again.returncode == 0 and "stage vocab: already done" in again.stderr


def test_stages_run_under_train_precision_and_teacher_stages_are_keyed_by_it(tmp_path):
    """``train.precision``: every stage runs under its Keras dtype policy (restored after);
    a stage that builds models in it (``runs_in_train_precision``: a teacher's fine-tuning, a
    cache) is keyed by it once it is not float32, and a stage that builds none is not."""
    import keras

    class PolicyStage(CountingStage):
        def run(self, context, workdir):
            self.policy = keras.mixed_precision.global_policy().name
            return super().run(context, workdir)

    class TeacherStage(PolicyStage):
        runs_in_train_precision = True

    def plan():
        return [PolicyStage("vocab"), TeacherStage("teacher", ("vocab",)), PolicyStage("train", ("teacher",))]

    plain, bf16 = make(tmp_path), make(tmp_path, ["train.precision=mixed_bfloat16"])
    plain_runner, bf16_runner = Runner(plain, plan_of(plan())), Runner(bf16, plan_of(plan()))
    assert plain_runner.key("vocab") == bf16_runner.key("vocab")
    assert plain_runner.key("teacher") != bf16_runner.key("teacher")
    assert Runner(make(tmp_path, ["train.precision=float32"]), plan_of(plan())).key("teacher") == plain_runner.key(
        "teacher"
    )
    stages = plan()
    Runner(bf16, plan_of(stages)).run(["vocab", "teacher", "train"], None)
    assert [s.policy for s in stages] == ["mixed_bfloat16"] * 3
    assert keras.mixed_precision.global_policy().name == "float32"
