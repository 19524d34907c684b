"""Soft-target distillation through every stage with the real MiniLM teacher on a few hundred
Multi30k pairs (C-MLM fine-tuning, the top-K cache, baseline and distilled students), the same
run killed anywhere and resumed, and the left-to-right teacher's cache."""

import json
import math
import re
import shutil

import numpy as np
import pytest
from helpers import tfkd
from kill_anywhere import CASES, SOFT_TARGET_SPEC, check_killed_anywhere, finished, shared_straight_run
from report_runs import check_page

from tfkd.comparison import FEW_SEEDS


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir):
    """The kill-anywhere case's small spec (every stage: C-MLM fine-tuning, the top-K cache,
    baseline and distilled students, their evaluation, the export) run once a session,
    uninterrupted: this file's end-to-end checks read it, the kill-anywhere test compares with
    it, and tests/report/test_report.py builds its pages on it."""
    return shared_straight_run("soft_target", tmp_path_factory, data_dir)


@pytest.mark.slow
def test_soft_target_pipeline_with_the_real_teacher(straight, data_dir, tmp_path):
    run, out = straight
    finetune = json.load(open(run / "teacher_finetune" / "stage.json"))["results"]
    # 6 steps already predict masked tokens better than a uniform guess over the vocabulary (the
    # accuracy on 16 validation pairs after 6 steps may still be 0: it is reported, not asserted)
    assert finetune["steps"] == 6 and 0 <= finetune["val_accuracy"] <= 1 and finetune["val_loss"] < math.log(30522)
    cache = json.load(open(run / "teacher_cache" / "manifest.json"))
    train = json.load(open(run / "train" / "stage.json"))["results"]
    # every pair the student trains on (those within max_tokens) has its soft targets
    kept = int(re.search(r"tfkd I train: (\d+) training pairs", out.stderr).group(1))
    assert 100 < kept <= 240
    assert cache["examples"] == kept and len(cache["shards"]) == math.ceil(kept / 80) and cache["top_k"] == 4
    assert train["steps"] == 6 and json.load(open(run / "baseline" / "stage.json"))["results"]["steps"] == 6
    assert (
        f"soft targets for {kept} examples streamed from the cache (K=4, T=2, {math.ceil(kept / 80)} shards"
        in out.stderr
    )
    assert "sentences/s" in out.stderr and "MB on disk" in out.stderr
    # the student predicts the teacher's tokens that the training targets use
    vocab = json.load(open(run / "vocab" / "stage.json"))["results"]
    assert 300 < vocab["target_vocab_size"] < 3000
    assert re.search(rf"vocab: {vocab['target_vocab_size']} of the teacher's 30522 tokens occur", out.stderr)
    assert 0 <= json.load(open(run / "teacher_cache" / "stage.json"))["results"]["mass_outside_vocabulary"] < 0.5
    # the table, and under it that one seed establishes nothing
    lines = out.stdout.strip().splitlines()
    assert lines.pop() == FEW_SEEDS
    assert lines[-4].startswith("| student ") and "test BLEU" in lines[-4] and lines[-3].startswith("|---")
    assert lines[-2].startswith("| baseline ") and lines[-1].startswith("| soft_target (soft=0.5 xe=0.5) ")
    # the distilled student exports like any other
    assert (run / "export" / "straight" / "1" / "saved_model.pb").exists()
    # a second run (of a copy: the run is shared) finishes at once, and writes the run's report
    # at its end (report.enabled; latency is tests/report/'s)
    shutil.copytree(run, tmp_path / "runs" / "straight")
    case = CASES["soft_target"]
    extra = ["report.enabled=true", "report.latency=false"]
    again = finished(case.spec_file(tmp_path), case, "straight", tmp_path / "runs", data_dir, extra)
    assert again.stderr.count("already done") == 8
    page = tmp_path / "runs" / "straight" / "report" / "index.html"
    assert "Every stage the spec asks for has finished." in check_page(str(page))[0]


@pytest.mark.slow
def test_a_soft_target_run_killed_anywhere_finishes_as_an_uninterrupted_one(straight, data_dir, tmp_path):
    """Kill anywhere (``tests/kill_anywhere.py``) on the same spec: SIGKILLed, SIGTERMed and
    SIGINTed in every kind of stage it has, resumed each time, it must finish equal to the
    uninterrupted run above."""
    run, _ = straight
    check_killed_anywhere("soft_target", tmp_path, data_dir, straight=run)


@pytest.mark.slow
def test_left_to_right_teacher_ablation_fills_the_cache_in_one_pass(tmp_path, data_dir):
    path = tmp_path / "kd_l2r.yaml"
    path.write_text(SOFT_TARGET_SPEC.replace("name: killed", "name: kd_l2r"))
    out = tfkd(
        "run",
        str(path),
        "--stages",
        "vocab,teacher_finetune,teacher_cache",
        "--set",
        f"run_dir={tmp_path / 'runs'}",
        "--set",
        "distill.finetune.direction=left_to_right",
        env_extra={"TFKD_DATA_DIR": data_dir},
    )
    assert out.returncode == 0, out.stderr[-4000:]
    run = tmp_path / "runs" / "kd_l2r"
    finetune = json.load(open(run / "teacher_finetune" / "stage.json"))["results"]
    assert finetune["steps"] == 6 and finetune["val_loss"] < math.log(30522)
    manifest = json.load(open(run / "teacher_cache" / "manifest.json"))
    assert manifest["direction"] == "left_to_right" and manifest["groups"] == 1
    from tfkd.teachers.topk_cache import read_cache

    entries, _ = read_cache(str(run / "teacher_cache"))
    assert len(entries) == manifest["examples"] > 100
    # every target position (EOS included) holds the teacher's top-K, less what fell outside the
    # student's pruned vocabulary, which the stage reports
    totals = np.concatenate([probs.sum(-1) for _, probs in entries.values()])
    assert (totals <= 1.001).all() and (totals > 0).mean() > 0.5
    outside = json.load(open(run / "teacher_cache" / "stage.json"))["results"]["mass_outside_vocabulary"]
    assert abs((1 - totals).mean() - outside) < 2e-3
    assert all((ids >= 0).all() for ids, _ in entries.values())
