"""tools/hypothesis_stats.py: the share of distinct hypotheses, of adjacent repeated words, the
most common line and the mean length, against counts made by hand; a folder reads its
``SPLIT.hyp``; the command prints one Markdown row per output."""

import os
import subprocess
import sys

import pytest
from helpers import REPO

TOOL = os.path.join(REPO, "tools", "hypothesis_stats.py")
sys.path.insert(0, os.path.join(REPO, "tools"))

import hypothesis_stats  # noqa: E402


def test_counts_match_a_hand_count():
    lines = ["a man in a a street .", "a man in a a street .", "two dogs run", "", "b b b"]
    stats = hypothesis_stats.hypothesis_stats(lines)
    # 4 different lines of 5; word pairs 6 + 6 + 2 + 0 + 2 = 16, of them 1 + 1 + 0 + 0 + 2 repeat
    assert stats["distinct"] == pytest.approx(4 / 5)
    assert stats["adjacent_repeats"] == pytest.approx(4 / 16)
    assert (stats["most_common"], stats["most_common_count"]) == ("a man in a a street .", 2)
    assert stats["mean_words"] == pytest.approx((7 + 7 + 3 + 0 + 3) / 5)
    assert hypothesis_stats.hypothesis_stats(["x"])["adjacent_repeats"] == 0.0
    with pytest.raises(ValueError):
        hypothesis_stats.hypothesis_stats([])


def test_the_command_reads_evaluate_folders_and_references(tmp_path):
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "evaluate" / "test.hyp").write_text("a a b\na a b\n", encoding="utf-8")
    (tmp_path / "test.en").write_text("A dog.\nTwo cats run.\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, TOOL, str(tmp_path / "evaluate"), "--references", str(tmp_path / "test.en")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[2] == f"| {tmp_path / 'evaluate'} | 2 | 0.500 | 0.500 | 'a a b' (2) | 3.00 |"
    assert lines[3] == f"| {tmp_path / 'test.en'} (references) | 2 | 1.000 | 0.000 | 'A dog.' (1) | 2.50 |"
    missing = subprocess.run([sys.executable, TOOL, str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr == f"hypothesis_stats: {tmp_path / 'nowhere'}: no such file\n"
