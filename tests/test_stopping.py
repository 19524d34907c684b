"""A graceful stop (tfkd.stopping): SIGTERM and SIGINT while a stage trains end the step, write
the checkpoint and exit 143 / 130 in one line; elsewhere they stop at once; a second signal or
the grace period running out exits at once. Signals sent to real processes."""

import os
import signal
import subprocess
import sys
import time

import forked_cli
import numpy as np
import pytest
from helpers import REPO, tfkd, weights_file_arrays, write_spec

from tfkd.stopping import (
    StopSignal,
    checkpointing,
    handling_stop_signals,
    interrupts_kept,
    raise_if_interrupted,
    stop_requested,
)


def test_outside_a_training_loop_a_signal_stops_at_once_and_the_handlers_are_put_back():
    before = signal.getsignal(signal.SIGTERM)
    with handling_stop_signals(30):
        with pytest.raises(StopSignal) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        assert caught.value.exit_code == 143 and caught.value.message is None
        assert isinstance(caught.value, KeyboardInterrupt)  # Ctrl-C's clean-ups run for it
    assert signal.getsignal(signal.SIGTERM) is before and stop_requested() is None


def test_inside_a_training_loop_a_signal_only_asks_to_stop():
    with handling_stop_signals(30), checkpointing():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert stop_requested() == signal.SIGINT


def swallowing(signum, then):
    """What Keras' loading code does with an exception of a layer (``except:`` in
    keras/src/saving/saving_lib.py, ``except Exception`` around each layer's variables): catch
    it, then raise a ValueError of its own (``then`` "raise") or go on ("return")."""
    try:
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises before this ends
    except BaseException:
        if then == "raise":
            raise ValueError("A total of 3 objects could not be loaded") from None
    return "loaded"


@pytest.mark.parametrize("then", ["raise", "return"])
def test_a_signal_a_block_swallowed_still_stops_the_command(then):
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as caught:  # Ctrl-C without tfkd's handlers: Python's own
        with interrupts_kept():
            swallowing(signal.SIGINT, then)
    assert type(caught.value) is KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is before
    with handling_stop_signals(30):  # tfkd run's handlers, outside a training loop: a StopSignal
        with pytest.raises(StopSignal) as caught:
            with interrupts_kept():
                swallowing(signal.SIGTERM, then)
        assert caught.value.exit_code == 143


def test_between_batches_a_swallowed_signal_stops_the_work_at_once():
    batches = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_kept():
            for batch in range(5):
                raise_if_interrupted()  # as tfkd.tasks.translation.inference does between batches
                if batch == 1:
                    swallowing(signal.SIGINT, "return")  # the first batch's tracing, say
                batches.append(batch)
    assert batches == [0, 1]  # not the three batches after it
    raise_if_interrupted()  # the block is over: nothing is pending


def test_without_a_signal_the_block_raises_and_returns_as_it_does():
    with pytest.raises(ValueError, match="could not be loaded"):
        with interrupts_kept():
            raise ValueError("A total of 3 objects could not be loaded")
    with interrupts_kept():
        value = "loaded"
    assert value == "loaded"
    with handling_stop_signals(30), checkpointing(), interrupts_kept():  # a stop only asked for
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert stop_requested() == signal.SIGINT


AFTER_THE_SIGNAL = """\
import os, signal, sys, time
sys.path.insert(0, {repo!r})
from tfkd.stopping import checkpointing, handling_stop_signals

with handling_stop_signals({grace}), checkpointing():
    os.kill(os.getpid(), signal.SIGTERM)
    print("asked", flush=True)
    {then}
    time.sleep(30)  # a step that does not end
print("not stopped", flush=True)
"""


@pytest.mark.parametrize(
    "grace, then, why",
    [
        (0.5, "pass", "SIGTERM: the grace period of 0.5s ran out"),
        (30, "os.kill(os.getpid(), signal.SIGTERM)", "a second SIGTERM"),
    ],
    ids=["grace-period", "second-signal"],
)
def test_a_stop_that_takes_too_long_or_a_second_signal_exits_at_once(tmp_path, grace, then, why):
    script = tmp_path / "step.py"
    script.write_text(AFTER_THE_SIGNAL.format(repo=REPO, grace=grace, then=then))
    start = time.time()
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 143 and out.stdout == "asked\n", out.stderr[-2000:]
    assert out.stderr.splitlines()[-1] == (
        f"tfkd: error: stopped at once ({why}); the finished stages and the last good checkpoint are kept"
    )
    assert time.time() - start < 20


def _signal_when(process, text, signum):
    """Send ``signum`` to ``process`` (a :class:`forked_cli.ForkedCommand`) once its stderr
    shows ``text``; returns (stderr, seconds from the signal to the exit)."""
    deadline = time.time() + 600
    try:
        while text not in process.stderr_so_far():
            if process.poll() is not None or time.time() > deadline:
                pytest.fail(process.communicate(timeout=60)[1][-3000:])
            time.sleep(0.05)
    finally:  # never leave the fork server busy with it (the next command would wait for ever)
        if process.poll() is None and text not in process.stderr_so_far():
            process.send_signal(signal.SIGKILL)
            process.wait(60)
    process.send_signal(signum)
    sent = time.time()
    _, stderr = process.communicate(timeout=120)
    return stderr, time.time() - sent


def _run_command(spec, *flags):
    """``tfkd run SPEC FLAGS`` forked (:mod:`forked_cli`) and running, progress bars off."""
    return forked_cli.ForkedCommand(["run", spec, *flags], dict(os.environ, TFKD_QUIET_PROGRESS="1"))


@pytest.mark.slow
def test_sigterm_and_ctrl_c_in_training_stop_at_a_checkpoint_and_the_run_goes_on_as_a_straight_one(tmp_path):
    """A tiny real run of 30 steps (checkpoints every 10) gets SIGTERM near step 4 and SIGINT
    near step 16; each time the command says in its last line where it stopped and how to go
    on, and exits 143 / 130; the run then finishes with the weights of a run never stopped."""
    spec = write_spec(tmp_path, "tiny", steps=30, every=10)
    flags = ["--stages", "vocab,train", "--set", "train.deterministic=true"]
    stops = []
    for text, signum in (("step 4/30", signal.SIGTERM), ("step 16/30", signal.SIGINT)):
        process = _run_command(spec, *flags)
        stderr, seconds = _signal_when(process, text, signum)
        last = stderr.splitlines()[-1]
        assert process.returncode == 128 + signum, stderr[-3000:]
        name = signal.Signals(signum).name
        assert last.startswith("tfkd: error: train: stopped at step ") and f"of 30 by {name}" in last, last
        assert last.endswith(f"`tfkd run {spec} {' '.join(flags)}` goes on from it"), last
        assert "Traceback" not in stderr and seconds < 25
        stops.append(int(last.split("stopped at step ")[1].split()[0]))
        assert (tmp_path / "runs" / "tiny" / "train.partial" / "checkpoint" / "state.json").exists()
    assert 4 <= stops[0] < stops[1] < 30
    finished = tfkd("run", spec, *flags)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"train: continuing from step {stops[1]} of 30" in finished.stderr

    straight = tfkd("run", spec, *flags, "--set", "name=straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    ours = weights_file_arrays(tmp_path / "runs" / "tiny" / "train" / "student.weights.h5")
    theirs = weights_file_arrays(tmp_path / "runs" / "straight" / "train" / "student.weights.h5")
    assert sorted(ours) == sorted(theirs) and ours
    for name, array in ours.items():
        np.testing.assert_array_equal(array, theirs[name], err_msg=name)


@pytest.mark.slow
def test_sigterm_outside_training_stops_the_stage_at_once_and_it_runs_again(tmp_path):
    spec = write_spec(tmp_path, "tiny", steps=4, every=2)
    flags = ["--stages", "vocab,train,evaluate"]
    process = _run_command(spec, *flags)
    stderr, _ = _signal_when(process, "stage evaluate: running", signal.SIGTERM)
    assert process.returncode == 143, stderr[-3000:]
    assert stderr.splitlines()[-1] == (
        "tfkd: error: interrupted; finished stages and the last checkpoint are kept (SIGTERM)"
    ), stderr[-2000:]
    run = tmp_path / "runs" / "tiny"
    assert (run / "train" / "stage.json").exists() and not (run / "evaluate").exists()
    again = tfkd("run", spec, *flags)
    assert again.returncode == 0 and "stage train: already done" in again.stderr, again.stderr[-3000:]
    assert (run / "evaluate" / "stage.json").exists()


def test_the_grace_period_is_a_train_setting_outside_the_stage_key(tmp_path):
    from tfkd.plan import plan_run
    from tfkd.runner import Runner
    from tfkd.spec import load_spec

    spec = write_spec(tmp_path, "tiny")
    keys = []
    for overrides in ([], ["train.preemption_grace_s=120"]):
        loaded = load_spec(spec, overrides)
        assert loaded.train.preemption_grace_s == (120 if overrides else 25)
        keys.append(Runner(loaded, plan_run(loaded)).key("train"))
    assert keys[0] == keys[1]
    bad = tfkd("validate", spec, "--set", "train.preemption_grace_s=0")
    assert bad.returncode == 2 and "train.preemption_grace_s" in bad.stderr, bad.stderr
    assert len(bad.stderr.splitlines()) == 1
