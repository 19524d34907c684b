"""Student teachers' top-K caches (tfkd.teachers.student_caches, planned by
tfkd.teachers.student_plan): with the tail mass kept, the cache is the teacher's softmax; and a
user's method outside tfkd/ (tests/teacher_plugins.py) distils, with reverse KL over the K and
the tail, from a wider Transformer that ``supervised`` trains in the same run."""

import json
import shutil

import numpy as np
import pytest
from helpers import REPO, tfkd

SPEC = """\
version: 1
name: teacher_kd
run_dir: {run_dir}
imports: [teacher_plugins]
data:
  source: text
  dir: {data_dir}/multi30k_deen
  src_lang: de
  tgt_lang: en
  train_limit: 200
  valid_limit: 16
  test_limit: 16
  max_tokens: 32
  batch_tokens: 1024
  source_tokenizer: {{kind: learned, vocab_size: 400}}
  target_tokenizer: {{kind: learned, vocab_size: 400}}
student: {{kind: transformer, encoder_layers: 1, decoder_layers: 1, hidden_dim: 32, intermediate_dim: 64, num_heads: 2}}
distill: {{method: teacher_kd, teacher: wide, divergence: reverse_kl, tail: true, top_k: 4, alpha: 0.5}}
variants:
  wide: {{distill: {{method: supervised}}, student.hidden_dim: 64, student.intermediate_dim: 128}}
train: {{steps: 4, checkpoint_every: 2, log_every: 2, warmup_steps: 10, valid_metric_examples: 4}}
decode: {{beam_size: 2, max_length_b: 4}}
evaluate: {{splits: [test]}}
report: {{enabled: false}}
"""
STAGES = "vocab,wide,wide_evaluate,teacher_cache_wide,train,evaluate"


def write_spec(tmp_path, data_dir, **changes):
    shutil.copy(f"{REPO}/tests/teacher_plugins.py", tmp_path / "teacher_plugins.py")
    text = SPEC.format(run_dir=tmp_path / "runs", data_dir=data_dir)
    for old, new in changes.items():
        text = text.replace(old, new)
    (tmp_path / "spec.yaml").write_text(text)
    return str(tmp_path / "spec.yaml")


def ran(stderr):
    return [line.split("stage ")[1].split(":")[0] for line in stderr.splitlines() if ": running into" in line]


def cached_with_tail(directory):
    from tfkd.teachers.topk_cache import stream_cache

    return {
        int(item["id"]): (item["teacher_ids"], item["teacher_probs"].astype(np.float32), item["teacher_tail"])
        for item in stream_cache(directory).as_numpy_iterator()
    }


@pytest.mark.slow
def test_a_user_method_distils_with_reverse_kl_from_a_wider_student_trained_in_the_run(tmp_path, data_dir):
    spec = write_spec(tmp_path, data_dir)
    out = tfkd("run", spec, "--stages", STAGES)
    assert out.returncode == 0, out.stderr[-4000:]
    assert ran(out.stderr) == STAGES.split(",")
    run_dir = tmp_path / "runs" / "teacher_kd"
    manifest = json.load(open(run_dir / "teacher_cache_wide" / "manifest.json"))
    assert manifest["tail"] is True and manifest["top_k"] == 4 and manifest["teacher"] == "stage wide"

    # the cache is the wide student's own softmax, teacher-forced: its top 4 renormalised and
    # the mass outside them
    import keras

    from tfkd.pipeline import open_run
    from tfkd.stages import load_student

    _, _, context = open_run(str(run_dir))
    teacher = load_student(context, "wide")
    tokenized = context.task.tokenized(context, "train", "test")
    entries = cached_with_tail(str(run_dir / "teacher_cache_wide"))
    row = 7
    source = tokenized.source_ids[row].numpy()[None].astype(np.int32)
    target = tokenized.target_ids[row].numpy()
    bos = context.tokenizers().target.token_to_id("[CLS]")
    decoder = np.concatenate([[bos], target])[None].astype(np.int32)
    logits = teacher({"source_ids": source, "decoder_ids": decoder}, training=False)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))[0]
    ids, cached, tail = entries[int(tokenized.kept[row])]
    top = np.sort(probs, axis=-1)[:, ::-1][:, :4]
    np.testing.assert_array_equal(ids[:, 0], probs.argmax(-1))
    np.testing.assert_allclose(cached, top / top.sum(-1, keepdims=True), atol=2e-3)
    np.testing.assert_allclose(tail, 1.0 - top.sum(-1), atol=2e-3)

    # the student trained on both terms, keyed by its divergence
    results = json.load(open(run_dir / "train" / "stage.json"))["results"]
    assert results["loss_weights"] == {"soft": 0.5, "xe": 0.5} and np.isfinite(results["soft"])
    key = context.runner.key_inputs("train")
    assert key["config"]["method_config"]["divergence"] == {"divergence": "reverse_kl", "tail": True}
    assert key["upstream"]["teacher_cache_wide"] == context.runner.key("teacher_cache_wide")


@pytest.mark.parametrize(
    "teacher, message",
    [
        ("train", "stage train cannot teach itself"),
        ("wyde", 'unknown teacher "wyde" (did you mean "wide"?); expected a train stage before train (baseline, wide)'),
    ],
)
def test_a_teacher_the_user_method_cannot_read_is_one_line_naming_the_key(tmp_path, data_dir, teacher, message):
    spec = write_spec(tmp_path, data_dir, **{"teacher: wide": f"teacher: {teacher}"})
    out = tfkd("validate", spec)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"{spec}:18: distill.teacher: ") and message in line, line
