"""The ensemble spec, shrunk by --set, through every stage with the real MiniLM teacher: the
C-MLM teacher and a wider Transformer trained in the run, each cached once, their mixture, and
the student; then a third teacher added: the first two caches are reused, not rebuilt; then
the wide teacher read from its export, which caches what its stage cached, and an export over
another vocabulary refused in one line."""

import json
import shutil

import numpy as np
import pytest
from helpers import REPO, tfkd

SHRINK = [
    "stages=null",
    "data.train_limit=200",
    "data.valid_limit=16",
    "data.test_limit=16",
    "data.max_tokens=32",
    "data.batch_tokens=1024",
    "data.source_tokenizer.vocab_size=400",
    "distill.finetune={steps: 4, batch_size: 8, warmup_steps: 1, log_every: 2, max_length: 80}",
    "distill.cache={top_k: 4, temperature: 2.0, mask_rate: 0.5, batch_size: 64, shard_size: 100, shuffle_buffer: 50}",
    "distill.shard_size=70",
    "variants={big: {distill: {method: supervised}, student.hidden_dim: 64, student.intermediate_dim: 128, "
    "train.seeds: [1]}}",
    "student={kind: transformer, encoder_layers: 1, decoder_layers: 1, hidden_dim: 32, intermediate_dim: 64, "
    "num_heads: 2}",
    "train={steps: 4, checkpoint_every: 2, log_every: 2, warmup_steps: 10, valid_metric_examples: 4}",
    "decode={beam_size: 2, max_length_b: 4}",
    "report={enabled: false}",
]
STAGES = "vocab,teacher_finetune,teacher_cache,big,big_evaluate,teacher_cache_big,train_soft_targets,train,evaluate"


def run(tmp_path, data_dir, stages, *flags):
    args = ["run", f"{REPO}/specs/ensemble_multi30k.yaml", "--stages", stages]
    args = [*args, "--set", f"run_dir={tmp_path}", *(a for flag in [*SHRINK, *flags] for a in ("--set", flag))]
    return tfkd(*args, env_extra={"TFKD_DATA_DIR": data_dir})


def ran(stderr):
    return [line.split("stage ")[1].split(":")[0] for line in stderr.splitlines() if ": running into" in line]


@pytest.mark.slow
def test_the_ensemble_spec_end_to_end_and_a_third_teacher_reuses_the_first_two_caches(tmp_path, data_dir):
    first = run(tmp_path, data_dir, STAGES)
    assert first.returncode == 0, first.stderr[-4000:]
    run_dir = tmp_path / "ensemble_multi30k"
    assert ran(first.stderr) == [
        "vocab",
        "teacher_finetune",
        "teacher_cache",
        "big",
        "big_evaluate",
        "teacher_cache_big",
        "train_soft_targets",
        "train",
        "evaluate",
    ]
    combined = json.load(open(run_dir / "train_soft_targets" / "manifest.json"))
    assert combined["top_k"] == 4 + 8 and combined["combine"] == "mixture"
    assert [(t["cache"], t["weight"], t["top_k"], t["temperature"]) for t in combined["teachers"]] == [
        ("teacher_cache", 0.5, 4, 2.0),
        ("teacher_cache_big", 0.5, 8, 1.0),
    ]
    assert "train: soft targets of 2 teacher(s)" in first.stderr
    train = json.load(open(run_dir / "train" / "stage.json"))["results"]
    assert train["steps"] == 4 and train["loss_weights"] == {"soft": 0.1, "xe": 0.9}

    # the wide teacher's cache is its student's own distribution, teacher-forced on the pairs
    import keras

    from tfkd.pipeline import open_run
    from tfkd.stages import load_student
    from tfkd.teachers.topk_cache import read_cache

    _, _, context = open_run(str(run_dir))
    teacher = load_student(context, "big")
    tokenized = context.task.tokenized(context, "train", "test")
    entries, manifest = read_cache(str(run_dir / "teacher_cache_big"))
    assert manifest["examples"] == len(tokenized) and manifest["temperature"] == 1.0
    row = 5
    example = int(tokenized.kept[row])
    source = tokenized.source_ids[row].numpy()[None]
    target = tokenized.target_ids[row].numpy()
    bos = context.tokenizers().target.token_to_id("[CLS]")
    decoder = np.concatenate([[bos], target])[None].astype(np.int32)
    logits = teacher({"source_ids": source.astype(np.int32), "decoder_ids": decoder}, training=False)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))[0]
    ids, cached = entries[example]
    assert ids.shape == (len(target) + 1, 8)
    np.testing.assert_array_equal(ids[:, 0], probs.argmax(-1))
    top = np.sort(probs, axis=-1)[:, ::-1][:, :8]
    np.testing.assert_allclose(cached, top / top.sum(-1, keepdims=True), atol=2e-3)

    # a third teacher: the first two caches are reused; its own cache and the mixture are new
    stages = STAGES.replace("teacher_cache,", "teacher_cache,baseline,teacher_cache_baseline,")
    second = run(tmp_path, data_dir, stages, "distill.teachers.baseline={weight: 2.0}")
    assert second.returncode == 0, second.stderr[-4000:]
    for reused in ("teacher_finetune", "teacher_cache", "big", "teacher_cache_big"):
        assert f"stage {reused}: already done" in second.stderr, reused
    assert ran(second.stderr) == ["baseline", "teacher_cache_baseline", "train_soft_targets", "train", "evaluate"]
    combined = json.load(open(run_dir / "train_soft_targets" / "manifest.json"))
    assert combined["top_k"] == 4 + 8 + 8
    assert [t["weight"] for t in combined["teachers"]] == pytest.approx([1 / 6, 1 / 6, 2 / 3])  # 0.5, 0.5, 2

    # the wide teacher exported and read back as a teacher: the same distributions
    export = tfkd("export", str(run_dir), "--stage", "big", "--out", str(tmp_path / "exports"))
    assert export.returncode == 0, export.stderr[-3000:]
    (version,) = list((tmp_path / "exports").glob("*/1"))
    stages = STAGES.replace("teacher_cache,", "teacher_cache,teacher_cache_ext,")
    third = run(tmp_path, data_dir, stages, f"distill.teachers.ext={{source: {version}, temperature: 1.0}}")
    assert third.returncode == 0, third.stderr[-4000:]
    assert "teacher_cache_ext" in ran(third.stderr) and "stage teacher_cache_big: already done" in third.stderr
    from_export, manifest = read_cache(str(run_dir / "teacher_cache_ext"))
    from_stage, _ = read_cache(str(run_dir / "teacher_cache_big"))
    assert sorted(from_export) == sorted(from_stage) and manifest["teacher"] == f"export {version}"
    for example in list(from_stage)[:20]:
        np.testing.assert_array_equal(from_export[example][0][:, :2], from_stage[example][0][:, :2])
        np.testing.assert_allclose(from_export[example][1], from_stage[example][1], atol=2e-3)

    # an export over another target vocabulary is refused, in one line
    other = tmp_path / "other" / "1"
    shutil.copytree(version, other)
    info = json.load(open(other / "assets.extra" / "tfkd.json"))
    json.dump(dict(info, target_vocabulary_sha256="0" * 64), open(other / "assets.extra" / "tfkd.json", "w"))
    refused = run(tmp_path, data_dir, "vocab,teacher_cache_other", f"distill.teachers.other={{source: {other}}}")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"tfkd: error: teacher_cache_other: {other}: the export's target vocabulary is not the student's (another "
        "vocab stage or tokenizer); a teacher's distributions must be over the student's target tokens"
    )
