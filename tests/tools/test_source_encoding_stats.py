"""tools/source_encoding_stats.py: the encoder-output measures against values worked out by
hand (padding left out), and a run directory that is not there is one line."""

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO

TOOL = os.path.join(REPO, "tools", "source_encoding_stats.py")
sys.path.insert(0, os.path.join(REPO, "tools"))

import source_encoding_stats  # noqa: E402


def test_norm_and_cosine_leave_padding_out():
    hidden = np.array(
        [
            [[3.0, 4.0], [3.0, 4.0], [100.0, 100.0]],  # the last position is padding
            [[0.0, 2.0], [0.0, 2.0], [0.0, 2.0]],
        ]
    )
    mask = np.array([[True, True, False], [True, True, True]])
    stats = source_encoding_stats.encoding_stats(hidden, mask)
    # norms 5, 5, 2, 2, 2; sentence means (3, 4) and (0, 2): cosine 4/5
    assert stats["token_norm"] == pytest.approx(16 / 5)
    assert stats["mean_cosine"] == pytest.approx(0.8)
    same = source_encoding_stats.encoding_stats(np.ones((3, 2, 4)), np.ones((3, 2), bool))
    assert same["mean_cosine"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        source_encoding_stats.encoding_stats(hidden[:1], mask[:1])


def test_no_run_directory_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, TOOL, str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert (
        out.returncode == 1 and out.stderr == f"source_encoding_stats: {tmp_path / 'nowhere'}: no such run directory\n"
    )
