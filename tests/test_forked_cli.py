"""``tests/forked_cli.py``: a command forked from the server that has imported TensorFlow answers
as a fresh ``python -m tfkd.cli`` does (exit status, stdout, stderr, folder, environment,
signals), so the tests that use it test what users run. (Standard input:
``tests/cli/test_cli.py``'s interactive translation against translation from a file.)"""

import os
import signal
import subprocess
import sys
import time

import forked_cli
import pytest
from helpers import REPO, write_spec

SLOW_IMPORT = "import time\ntime.sleep(120)\n"


def fresh(args, env, cwd, input=None):
    return subprocess.run(
        [sys.executable, "-m", "tfkd.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, input=input
    )


def test_a_forked_command_answers_as_a_fresh_one(tmp_path):
    (tmp_path / "bad.yaml").write_text("version: 1\nname: x\ntrain:\n  bogus_key: 1\n")
    env = dict(os.environ, PYTHONPATH=REPO)
    for args in (["--version"], ["validate", "bad.yaml"], ["validate", "no_such.yaml"], ["nosuch"]):
        ours, theirs = forked_cli.run(args, env, cwd=tmp_path), fresh(args, env, tmp_path)
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), args
    assert forked_cli.run(["validate", "bad.yaml"], env, cwd=tmp_path).returncode == 2


def test_the_environment_and_the_folder_are_the_command_s(tmp_path):
    spec = write_spec(tmp_path, "tiny")
    env = dict(os.environ, TFKD_DATA_DIR=str(tmp_path / "elsewhere"))
    out = forked_cli.run(["config", spec], env, cwd=tmp_path)
    assert out.returncode == 0 and f"dir: {tmp_path / 'elsewhere' / 'multi30k_deen'}" in out.stdout, out.stderr
    args = ["translate", str(tmp_path / "no_run")]
    ours = forked_cli.run(args, dict(os.environ), cwd=tmp_path, input="Ein Mann.\n")
    theirs = fresh(args, dict(os.environ), tmp_path, input="Ein Mann.\n")
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr) and ours.returncode != 0


@pytest.mark.parametrize("number, expected", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)])
def test_a_signal_ends_a_forked_command_as_it_ends_a_fresh_one(tmp_path, number, expected):
    # a spec whose user module takes two minutes to import: the command is inside it when signalled
    (tmp_path / "slow_module.py").write_text(SLOW_IMPORT)
    (tmp_path / "spec.yaml").write_text("version: 1\nname: x\nimports: [slow_module]\n")
    command = forked_cli.ForkedCommand(["validate", "spec.yaml"], dict(os.environ), cwd=tmp_path)
    time.sleep(3)
    command.send_signal(number)
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == expected, stderr
    if number == signal.SIGINT:  # tfkd's own line, as a user's Ctrl-C gets
        assert stderr.splitlines()[-1].startswith("tfkd: error: interrupted"), stderr
    # the server goes on serving
    assert forked_cli.run(["--version"], dict(os.environ), cwd=tmp_path).returncode == 0
