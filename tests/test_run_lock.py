"""One writer per run directory (tfkd/run_lock.py), with real concurrent processes: a live
holder refuses a second writer in one line naming it; a SIGKILLed holder's lock is taken over
with a warning; a holder on another host counts as alive until its heartbeat is stale."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import REPO, tfkd, write_spec

from tfkd.run_lock import LOCK_FILE, STALE_AFTER_SECONDS, RunInUse, hold_if_inside, hold_run_dir

HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from tfkd.run_lock import hold_run_dir
    with hold_run_dir(sys.argv[1], command="tfkd run other.yaml"):
        print("held", flush=True)
        time.sleep(600)
    """
)


def start_holder(run_dir):
    """A separate process holding ``run_dir``; returns once it holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(repo=REPO), str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture
def holder(tmp_path):
    process = start_holder(tmp_path / "run")
    yield process
    process.kill()
    process.wait()


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(tmp_path, holder):
    with pytest.raises(RunInUse) as refused, hold_run_dir(str(tmp_path / "run")):
        pytest.fail("the block must not run while another process holds the directory")
    message = str(refused.value)
    assert "\n" not in message
    assert f"in use by pid {holder.pid} on {socket.gethostname()} since " in message
    assert "(tfkd run other.yaml)" in message
    # the holder's lock is untouched by the refusal
    assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == holder.pid


def test_the_lock_of_a_killed_holder_is_taken_over_with_a_warning(tmp_path, holder, caplog):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with caplog.at_level(logging.WARNING, logger="tfkd"), hold_run_dir(str(tmp_path / "run"), command="mine"):
        mine = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
    assert mine["pid"] == os.getpid() and mine["command"] == "mine"
    assert f"took over the lock of pid {holder.pid} on {socket.gethostname()}" in caplog.text
    # released: the file stays, empty, and the next writer gets it without a warning
    assert (tmp_path / "run" / LOCK_FILE).read_text() == ""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tfkd"), hold_run_dir(str(tmp_path / "run")):
        pass
    assert "took over" not in caplog.text


def remote_holder(run_dir, seconds_ago):
    os.makedirs(run_dir, exist_ok=True)
    beat = time.time() - seconds_ago
    holder = {"pid": 4242, "host": "node-17", "command": "tfkd run a.yaml", "since": "then", "heartbeat": beat}
    with open(os.path.join(run_dir, LOCK_FILE), "w") as f:
        json.dump(holder, f)


def test_a_holder_on_another_host_counts_as_alive_until_its_heartbeat_is_stale(tmp_path, caplog):
    run_dir = str(tmp_path / "run")
    remote_holder(run_dir, seconds_ago=20)
    with pytest.raises(RunInUse, match=r"in use by pid 4242 on node-17 .*heartbeat 2\ds ago"), hold_run_dir(run_dir):
        pass
    remote_holder(run_dir, seconds_ago=STALE_AFTER_SECONDS + 1)
    with caplog.at_level(logging.WARNING, logger="tfkd"), hold_run_dir(run_dir):
        pass
    assert "took over the lock of pid 4242 on node-17" in caplog.text


def test_a_folder_the_lock_made_is_removed_when_nothing_was_written(tmp_path):
    with hold_run_dir(str(tmp_path / "empty")):
        assert os.listdir(tmp_path / "empty") == [LOCK_FILE]
    assert not (tmp_path / "empty").exists()
    with hold_run_dir(str(tmp_path / "used")):
        (tmp_path / "used" / "vocab").mkdir()
    assert sorted(os.listdir(tmp_path / "used")) == [LOCK_FILE, "vocab"]


def test_writing_outside_the_run_takes_no_lock(tmp_path, holder):
    run_dir = str(tmp_path / "run")
    with hold_if_inside(run_dir, str(tmp_path / "elsewhere" / "export")):
        pass  # a reader of the held run
    with pytest.raises(RunInUse), hold_if_inside(run_dir, os.path.join(run_dir, "export")):
        pass


@pytest.mark.slow
def test_tfkd_run_on_a_held_run_directory_is_refused_and_writes_nothing(tmp_path):
    spec = write_spec(tmp_path, "tiny")
    run_dir = tmp_path / "runs" / "tiny"
    holder = start_holder(run_dir)
    try:
        out = tfkd("run", spec)
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert f"{run_dir}: in use by pid {holder.pid} on " in out.stderr and "(tfkd run other.yaml)" in out.stderr
    assert sorted(os.listdir(run_dir)) == [LOCK_FILE]  # no stage started, no log written
