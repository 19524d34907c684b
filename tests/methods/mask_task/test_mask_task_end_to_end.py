"""``specs/masktask_multi30k.yaml`` shrunk by ``--set`` (a few hundred pairs, the real MiniLM
teacher) through every stage: the teacher's MLM head, the baseline, hidden-state KD, mask-task
KD and mask-task KD with GOM, the table, the export; then the teacher's top K cached, and that
run killed anywhere, which must finish equal to it."""

import json
import os
import re

import pytest
from helpers import REPO, tfkd, train_in_bfloat16
from kill_anywhere import MASK_TASK_CACHED, MASK_TASK_SHRINK, MINILM_FLAGS, check_killed_anywhere

SHRINK = [
    "run_dir={run_dir}",
    "report.latency=false",  # the report is built; timing students is tests/report/'s
    *MINILM_FLAGS,  # deterministic: the kill-anywhere case below compares its run with this one
    *MASK_TASK_SHRINK,
    "stages=[vocab, teacher_mlm, baseline, baseline_evaluate, "
    "hidden_state, hidden_state_evaluate, mask_task, mask_task_evaluate, train, evaluate, export]",
]
# Table 2's "KD on Mask Task, orign": mask_task on the original source, trained beside the others
ORIGINAL_INPUT = [
    "variants.mask_task_orig={distill.gate: none, distill.kd_input: clean}",
    "stages=[vocab, teacher_mlm, baseline, baseline_evaluate, "
    "hidden_state, hidden_state_evaluate, mask_task, mask_task_evaluate, mask_task_orig, train, evaluate, export]",
]


@pytest.fixture(scope="module")
def masktask_run(tmp_path_factory, data_dir):
    """The shrunk spec through every stage, then again with the teacher's top K cached (its
    teacher_mlm_cache stage, and the student trained from it in place of the online one): the
    run's folder, both commands' outputs, and every stage's results after the first."""
    tmp = tmp_path_factory.mktemp("masktask")
    spec = os.path.join(REPO, "specs", "masktask_multi30k.yaml")
    flags = [a for s in SHRINK for a in ("--set", s.format(run_dir=tmp / "runs"))]
    original_input = [a for s in ORIGINAL_INPUT for a in ("--set", s)]
    out = tfkd("run", spec, *flags, *original_input, env_extra={"TFKD_DATA_DIR": data_dir})
    assert out.returncode == 0, out.stderr[-4000:]
    run = tmp / "runs" / "masktask_multi30k"
    results = {
        d.name: json.load(open(d / "stage.json"))["results"] for d in run.iterdir() if (d / "stage.json").exists()
    }
    cached_flags = [a for s in MASK_TASK_CACHED for a in ("--set", s)]
    stages = "vocab,teacher_mlm,teacher_mlm_cache,train"
    cached = tfkd("run", spec, *flags, *cached_flags, "--stages", stages, env_extra={"TFKD_DATA_DIR": data_dir})
    assert cached.returncode == 0, cached.stderr[-4000:]
    return run, out, results, cached


@pytest.mark.slow
def test_the_mask_task_spec_runs_every_stage_with_the_real_teacher(masktask_run):
    run, out, results, cached = masktask_run
    # the encoder reads the teacher's tokens that the English sources use
    assert re.search(r"vocab: \d+ of the teacher's 30522 tokens occur at least 1 times on the source side", out.stderr)
    mlm = results["teacher_mlm"]
    assert mlm["head"] == "trained" and mlm["steps"] == 6 and 0 <= mlm["val_accuracy"] <= 1
    assert 0 < mlm["trainable_parameters"] < 0.25 * 22.7e6  # the head and the top two layers
    for student in ("baseline", "hidden_state", "mask_task", "train"):
        assert results[student]["steps"] == 4, student
    assert results["hidden_state"]["method"] == "hidden_state" and results["hidden_state"]["kd"] > 0
    assert results["mask_task"]["method"] == "mask_task" and "kd_kept" not in results["mask_task"]
    # the same student, seed and batches, distilled on X instead of X': another KD term
    assert results["mask_task_orig"]["xe"] != results["mask_task"]["xe"]
    assert 0 < results["mask_task_orig"]["kd"] != results["mask_task"]["kd"]
    assert results["train"]["kd"] > 0 and 0 <= results["train"]["kd_kept"] <= 1  # GOM's kept fraction
    assert results["train"]["frozen_parameters"] > 22e6  # the teacher runs online, frozen
    assert results["baseline"]["loss_weights"] == {"xe": 1.0}
    assert results["train"]["loss_weights"] == {"xe": 1.0, "kd": 0.25}  # the spec's alpha
    # each student's BLEU, and the table
    for name in ("baseline", "hidden_state", "mask_task", "student"):
        assert re.search(rf"masktask_multi30k: {name} test BLEU [\d.]+ \(nrefs:1\|case:mixed", out.stdout), name
    rows = [line.split("|")[1].strip() for line in out.stdout.splitlines() if line.startswith("| ")][1:]
    assert rows == [
        "baseline",
        "hidden_state: hidden_state (xe=1 kd=0.5)",
        "mask_task: mask_task (xe=1 kd=0.25)",
        "mask_task (xe=1 kd=0.25)",
    ]
    assert (run / "export" / "masktask_multi30k" / "1" / "saved_model.pb").exists()
    # the gate's kept fraction reaches TensorBoard
    assert any(f.startswith("events") for f in os.listdir(run / "train" / "tensorboard"))
    assert re.search(r"step 2/\d+ \| .*kd_kept [\d.]+", out.stderr)
    # distill.teacher: cache writes the teacher's top-K once (the teacher_mlm stage is reused)
    assert "stage teacher_mlm: already done" in cached.stderr and "stage train: running" in cached.stderr
    kept = int(re.search(r"train: (\d+) training pairs", out.stderr).group(1))
    manifest = json.load(open(run / "teacher_mlm_cache" / "manifest.json"))
    assert manifest["examples"] == kept and manifest["top_k"] == 4 and manifest["masking"] == "token"
    assert f"q(.|X') for {kept} examples streamed from the cache (K=4" in cached.stderr
    train = json.load(open(run / "train" / "stage.json"))["results"]
    assert train["kd"] > 0 and train["frozen_parameters"] == 0  # no teacher in memory


@pytest.mark.slow
def test_a_mask_task_run_killed_anywhere_finishes_as_an_uninterrupted_one(masktask_run, tmp_path, data_dir):
    """Kill anywhere (``tests/kill_anywhere.py``) on the cached run above: SIGKILLed in the
    teacher's MLM head, its cache and the gated student, resumed each time, it must finish equal
    to that run's stages."""
    check_killed_anywhere("mask_task", tmp_path, data_dir, straight=masktask_run[0])


@pytest.mark.slow
def test_the_mask_task_spec_trains_in_mixed_bfloat16(tmp_path, data_dir):
    """The teacher's MLM head, hidden-state KD and the GOM-gated step (its per-term gradients,
    one module's inner product) under ``train.precision: mixed_bfloat16``."""
    runs = tmp_path / "runs"
    results = train_in_bfloat16(
        os.path.join(REPO, "specs", "masktask_multi30k.yaml"),
        [s.format(run_dir=runs) for s in SHRINK],
        ["vocab", "teacher_mlm", "hidden_state", "train"],
        runs / "masktask_multi30k",
        students=["hidden_state", "train"],
        env_extra={"TFKD_DATA_DIR": data_dir},
    )
    assert results["train"]["kd"] > 0 and 0 <= results["train"]["kd_kept"] <= 1
