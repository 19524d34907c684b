"""``train.jit_compile`` (:mod:`tfkd.xla`): the setting resolved, passed with the spec to each
task's bucketing (batches padded to their bucket's boundary while steps are XLA-compiled) and to
the compiling of each stage's steps, and a real run that compiles at most one training-step
program per bucket (counted from XLA's own dump of what it compiled)."""

import collections
import os
import re
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import write_corpus
from helpers import tfkd, write_spec

from tfkd.data import bucket_boundaries, bucketed_batches
from tfkd.spec import TrainSpec
from tfkd.stages import compile_and_build
from tfkd.tasks.classification import ClassificationData, ClassificationTask
from tfkd.tasks.classification.vocab import ClassificationTokenizers
from tfkd.tasks.translation import TranslationData, TranslationTask
from tfkd.tasks.translation.vocab import Tokenizers
from tfkd.training.masked_lm import fit_masked_lm
from tfkd.xla import resolve_jit_compile


def test_auto_is_off_on_cpu_and_true_or_false_hold():
    assert tf.config.list_physical_devices("GPU") == []
    assert resolve_jit_compile("auto") is False  # on a CPU-only machine
    assert resolve_jit_compile(True) is True
    assert resolve_jit_compile(False) is False


@pytest.mark.parametrize("task", ["translation", "classification"])
@pytest.mark.parametrize("setting", [True, False, "auto"])
def test_a_task_pads_its_batches_to_the_buckets_as_its_spec_s_train_jit_compile_says(
    tmp_path, tokenizer, task, setting
):
    texts = [" ".join(["the cat"] * (i % 7) + ["sat"]) for i in range(60)]  # 1, 3, ..., 13 words
    train = TrainSpec(seed=3, jit_compile=setting)
    if task == "translation":
        write_corpus(tmp_path, "train", [(text, text) for text in texts])
        data = TranslationData(dir=str(tmp_path), src_lang="de", tgt_lang="en", max_tokens=24, batch_tokens=64)
        spec, tokenizers, column = (
            SimpleNamespace(data=data, train=train, distill=None),
            Tokenizers(tokenizer, tokenizer),
            "source_ids",
        )
        task = TranslationTask()
    else:  # [CLS] text [SEP]: 3, 5, ..., 15 tokens
        (tmp_path / "train.tsv").write_text(
            "sentence\tlabel\n" + "".join(f"{text}\t{['neg', 'pos'][i % 2]}\n" for i, text in enumerate(texts))
        )
        data = ClassificationData(dir=str(tmp_path), max_tokens=24, batch_tokens=64)
        spec, tokenizers, column = (
            SimpleNamespace(data=data, train=train),
            ClassificationTokenizers(tokenizer, ["neg", "pos"]),
            "token_ids",
        )
        task = ClassificationTask()
    context = SimpleNamespace(spec=spec, tokenizers=lambda: tokenizers, memo=lambda key, make: make())
    widths = {int(inputs[column].shape[1]) for inputs, _ in task.train_dataset(context, "train").take(40)}
    if setting is True:
        assert widths <= {b - 1 for b in bucket_boundaries(24, 8)}  # 8, 16 (or 25)
    else:  # each batch as wide as its longest text: an odd width
        assert len(widths) > 2 and all(width % 2 for width in widths)


@pytest.mark.parametrize("setting", [True, False, "auto"])
def test_a_stage_s_steps_compile_as_its_setting_says(tmp_path, setting):
    batch = (np.ones([4, 3], np.float32), np.arange(4) % 2, np.ones([4], np.float32))
    trainer = keras.Sequential([keras.Input([3]), keras.layers.Dense(2)])
    compile_and_build(trainer, keras.optimizers.SGD(0.1), [batch[:2]], jit_compile=setting)
    assert trainer.jit_compile is (setting is True)
    teacher = keras.Sequential([keras.Input([3]), keras.layers.Dense(2)])  # a masked-LM teacher's fine-tuning
    settings = SimpleNamespace(learning_rate=0.1, warmup_steps=1, steps=1, log_every=1)
    fit_masked_lm(
        teacher,
        tf.data.Dataset.from_tensors(batch).repeat(),
        None,
        settings,
        str(tmp_path),
        "teacher",
        "a test",
        hint="",
        jit_compile=setting,
    )
    assert teacher.jit_compile is (setting is True)


def _pairs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(rng.integers(3, 50, rng.integers(1, 40)), rng.integers(3, 50, rng.integers(1, 40))) for _ in range(n)]
    ds = tf.data.Dataset.from_generator(
        lambda: iter(rows), output_signature=(tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64))
    )
    return rows, ds.map(lambda s, t: {"source": s, "target": t})


@pytest.mark.parametrize("padded", [True, False])
def test_padded_batches_have_one_shape_per_bucket_and_the_same_tokens(padded):
    rows, ds = _pairs()
    boundaries = bucket_boundaries(40, 8)
    batches = bucketed_batches(
        ds.repeat(),
        lambda x: tf.maximum(tf.shape(x["source"])[0], tf.shape(x["target"])[0]),
        40,
        8,
        256,
        {"source": tf.constant(0, tf.int64), "target": tf.constant(0, tf.int64)},
        pad_to_bucket=padded,
    )
    shapes, seen = set(), collections.Counter()
    for batch in batches.take(120):
        shapes.add((tuple(batch["source"].shape), tuple(batch["target"].shape)))
        assert batch["source"].shape[0] * batch["source"].shape[1] <= 256
        for source, target in zip(batch["source"].numpy(), batch["target"].numpy()):
            seen[(tuple(source[source > 0]), tuple(target[target > 0]))] += 1
    expected = collections.Counter((tuple(s), tuple(t)) for s, t in rows)
    assert set(seen) == set(expected)  # every pair, unchanged but for padding
    if padded:
        assert len(shapes) <= len(boundaries)
        assert {s[0][1] for s in shapes} <= {b - 1 for b in boundaries}
        assert all(s[0] == s[1] for s in shapes)
    else:
        assert len(shapes) > 2 * len(boundaries)  # what XLA would compile a program for each


def _compiled_programs(dump_dir):
    """Programs XLA compiled, per compiled function, in the order first compiled."""
    programs = collections.defaultdict(list)
    for name in os.listdir(dump_dir) if os.path.isdir(dump_dir) else []:
        match = re.match(r"module_(\d+)\.a_inference_(one_step_on_data_\d+)_.*before_optimizations\.txt$", name)
        if match:
            programs[match.group(2)].append(int(match.group(1)))
    return sorted(programs.values(), key=min)


@pytest.mark.slow
def test_an_xla_run_compiles_at_most_one_training_step_program_per_bucket(tmp_path, data_dir):
    spec = write_spec(tmp_path, "xla", steps=24, every=24)
    counts = {}
    # 24 steps reach every bucket; jit_compile: false needs a step and a validation to show it
    # compiles nothing
    for setting, steps in (("true", 24), ("false", 2)):
        dump = tmp_path / f"dump-{setting}"
        out = tfkd(
            "run",
            spec,
            "--stages",
            "vocab,train",
            "--set",
            f"train.jit_compile={setting}",
            "--set",
            f"name=xla_{setting}",
            "--set",
            f"train.steps={steps}",
            "--set",
            f"train.checkpoint_every={steps}",
            env_extra={
                "TFKD_DATA_DIR": data_dir,
                "XLA_FLAGS": f"--xla_dump_to={dump} --xla_dump_hlo_module_re=.*one_step_on_data.*",
            },
        )
        assert out.returncode == 0, out.stderr[-3000:]
        counts[setting] = _compiled_programs(dump)
        if setting == "true":
            buckets = re.search(r"batches padded to (\d+) bucket lengths \(8, 16, 24, 32, 41\) for XLA", out.stderr)
            assert buckets, out.stderr[-3000:]
    train_programs = counts["true"][0]  # the training step compiles first, validation after
    assert 1 <= len(train_programs) <= int(buckets.group(1)) == 5, counts
    assert counts["false"] == []  # jit_compile: false compiles nothing
