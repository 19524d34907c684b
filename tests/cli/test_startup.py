"""What the ``tfkd`` command sets up before TensorFlow runs: TensorFlow's C++ log lines stay off
the terminal unless ``--verbose`` asks for them."""

import os
import subprocess
import sys

import pytest
from helpers import REPO

# a float16 matmul makes TensorFlow's oneDNN print, as an ERROR line on CPUs that do have
# AVX-512: "E0000 ... util.cc:131] oneDNN supports DT_HALF only on platforms with AVX-512"
PROGRAM = """
import sys
from tfkd.cli.startup import import_tensorflow, setup_logging
setup_logging(verbose=sys.argv[1] == "verbose")
import_tensorflow()
import tensorflow as tf
print(tf.matmul(tf.ones([4, 4], tf.float16), tf.ones([4, 4], tf.float16)).shape)
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
    shown = [line for line in out.stderr.splitlines() if "oneDNN supports DT_HALF" in line]
    if verbose:  # the switch does something: without it, this machine prints the line
        assert shown, out.stderr[-3000:]
    else:
        assert not shown, out.stderr[-3000:]
