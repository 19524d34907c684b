"""A real spec on real data (a few hundred Multi30k pairs) through every stage, a second run
that skips everything, and SIGKILL during training followed by a resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO, tfkd, write_spec

@pytest.mark.slow
def test_tiny_spec_runs_every_stage_then_skips(tmp_path, data_dir):
    spec = write_spec(tmp_path, "tiny")
    first = tfkd("run", spec, env_extra={"TFKD_DATA_DIR": data_dir})
    assert first.returncode == 0, first.stderr[-3000:]
    assert "tiny: student test BLEU" in first.stdout
    run_dir = tmp_path / "runs" / "tiny"
    for stage in ("vocab", "train", "evaluate"):
        marker = json.load(open(run_dir / stage / "stage.json"))
        assert marker["stage"] == stage
    scores = json.load(open(run_dir / "evaluate" / "scores.json"))
    assert scores["test"]["sentences"] == 30
    assert len(open(run_dir / "evaluate" / "test.hyp").read().splitlines()) == 30
    assert (run_dir / "spec.yaml").exists()
    assert any(f.startswith("events") for f in os.listdir(run_dir / "train" / "tensorboard"))
    assert "tokens/s" in first.stderr and "steps/s" in first.stderr

    start = time.time()
    second = tfkd("run", spec, env_extra={"TFKD_DATA_DIR": data_dir})
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stderr.count("already done") == 3
    assert time.time() - start < 60

    # changing the decoder reruns only the evaluation
    third = tfkd("run", spec, "--set", "decode.algorithm=greedy", env_extra={"TFKD_DATA_DIR": data_dir})
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stderr.count("already done") == 2
    assert "stage evaluate: running" in third.stderr


@pytest.mark.slow
def test_sigkill_during_training_resumes_from_the_checkpoint(tmp_path, data_dir):
    spec = write_spec(tmp_path, "killed", steps=60, every=2)
    env = dict(os.environ, TFKD_QUIET_PROGRESS="1", TFKD_DATA_DIR=data_dir)
    state = tmp_path / "runs" / "killed" / "train.partial" / "checkpoint" / "state.json"
    process = subprocess.Popen([sys.executable, "-m", "tfkd.cli", "run", spec, "--stages", "vocab,train"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            if state.exists() and json.load(open(state))["step"] >= 4:
                break
            assert process.poll() is None, "training ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint appeared")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    saved_step = json.load(open(state))["step"]
    assert not (tmp_path / "runs" / "killed" / "train").exists()
    resumed = tfkd("run", spec, "--stages", "vocab,train",
                   env_extra={"TFKD_DATA_DIR": data_dir})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from checkpoint at step {saved_step}" in resumed.stderr
    assert "stage vocab: already done" in resumed.stderr
    marker = json.load(open(tmp_path / "runs" / "killed" / "train" / "stage.json"))
    assert marker["results"]["steps"] == 60


@pytest.mark.slow
def test_missing_data_file_is_one_line(tmp_path, data_dir):
    spec = write_spec(tmp_path, "nodata")
    out = tfkd("run", spec, "--set", "data.train_split=nosuch", env_extra={"TFKD_DATA_DIR": data_dir})
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"tfkd: error: {data_dir}/multi30k_deen/nosuch.de: file not found (needed by stage vocab)"
    )


def test_iwslt_spec_without_its_train_split_stops_at_once(tmp_path, data_dir):
    spec = os.path.join(REPO, "specs", "iwslt_deen.yaml")
    start = time.time()
    out = tfkd("run", spec, "--set", f"run_dir={tmp_path}", env_extra={"TFKD_DATA_DIR": data_dir})
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"tfkd: error: {data_dir}/iwslt14_deen/train.de: file not found (needed by stage vocab); prepare it "
        f"with: python tools/prepare_iwslt14.py de-en.tgz {data_dir}/iwslt14_deen"
    )
    assert time.time() - start < 60
    assert not os.path.exists(tmp_path / "iwslt_deen" / "vocab")
