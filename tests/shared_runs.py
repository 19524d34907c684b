"""Runs that tests in several files read, each made once a session.

A tiny trained run that two test files only read (load it, translate with it, export it, build
a report on it) need not be trained twice. :func:`shared_run` makes it the first time a test
asks for it, under a lock in a folder every pytest-xdist worker of the session shares (the
parent of each worker's base temporary folder), and hands the same folder and the command's
output to every later test, in whichever worker and file it runs; a worker that asks while
another is making it waits for it. What made the run is kept beside it (``made.json``: the
command's arguments, stdout and stderr; a run is kept only when its command succeeded), so each
test still checks what the command printed.

A test must not change a shared run: it copies it first (``shutil.copytree``) when it damages,
re-runs or extends it.
"""

import fcntl
import json
import os
import shutil
import subprocess

import pytest

MADE = "made.json"


def shared_root(tmp_path_factory):
    """The folder the session's workers share: the parent of this worker's base temporary
    folder under pytest-xdist (``.../pytest-N/popen-gw0`` -> ``.../pytest-N``), else the base."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared_runs"


def shared_run(tmp_path_factory, name, make):
    """``(folder, CompletedProcess)``: ``make(folder)``'s run, made once a session.

    ``make`` fills the empty ``folder`` and returns the command's ``CompletedProcess``; a failed
    command (non-zero return code) fails the test that made it and is made again by the next
    one that asks, never handed on."""
    root = shared_root(tmp_path_factory)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / name
    with open(root / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if not (folder / MADE).exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            out = make(folder)
            if out.returncode != 0:
                pytest.fail(f"the shared run {name} failed:\n{out.stderr[-3000:]}")
            made = {"args": [str(a) for a in out.args], "stdout": out.stdout, "stderr": out.stderr}
            (folder / MADE).write_text(json.dumps(made))
        made = json.loads((folder / MADE).read_text())
    return folder, subprocess.CompletedProcess(made["args"], 0, made["stdout"], made["stderr"])


def tiny_exported_run(tmp_path_factory, data_dir):
    """``(run folder, its SavedModel's version folder, CompletedProcess)``: :mod:`helpers`'
    tiny spec, 8 steps, evaluated on valid and exported (tests/exporters/test_exporters.py and
    tests/test_predictor.py read it)."""
    from helpers import tfkd, write_spec

    def make(folder):
        spec = write_spec(folder, "exported", steps=8, every=4)
        stages = "stages=[vocab,train,evaluate,export]"
        flags = ["--set", stages, "--set", "evaluate.splits=[valid]"]
        return tfkd("run", spec, *flags, env_extra={"TFKD_DATA_DIR": data_dir}, cwd=folder)

    folder, out = shared_run(tmp_path_factory, "exported", make)
    run_dir = folder / "runs" / "exported"
    return run_dir, run_dir / "export" / "exported" / "1", out
