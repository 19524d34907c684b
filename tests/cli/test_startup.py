"""What the ``tfkd`` command sets up before TensorFlow runs: TensorFlow's C++ log lines stay off
the terminal unless ``--verbose`` asks for them."""

import os
import subprocess
import sys

import pytest
from helpers import REPO

# a cached dataset read only in part makes TensorFlow print, on any CPU, a C++ WARNING line:
# "W0000 ... cache_dataset_ops.cc:912] The calling iterator did not fully read the dataset
# being cached. ..."
PROGRAM = """
import sys
from tfkd.cli.startup import import_tensorflow, setup_logging
setup_logging(verbose=sys.argv[1] == "verbose")
import_tensorflow()
import tensorflow as tf
print(next(iter(tf.data.Dataset.range(10).cache())).numpy())
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_tensorflows_cpp_log_lines_show_with_verbose_only(verbose):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # a user's environment
    env["PYTHONPATH"] = REPO
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, "verbose" if verbose else "quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    shown = [line for line in out.stderr.splitlines() if "did not fully read the dataset being cached" in line]
    if verbose:  # the switch does something: TensorFlow prints the line
        assert shown, out.stderr[-3000:]
    else:
        assert not shown, out.stderr[-3000:]
