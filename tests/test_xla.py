"""``train.jit_compile`` (:mod:`tfkd.training.xla`): the setting per stage, batches padded to
their bucket's boundary while steps are XLA-compiled, and a real run that compiles at most one
training-step program per bucket (counted from XLA's own dump of what it compiled)."""

import collections
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from helpers import tfkd, write_spec
from tfkd.data import bucket_boundaries, bucketed_batches
from tfkd.training.xla import jit_compilation, jit_compile


def test_the_setting_holds_while_a_stage_runs_and_auto_is_off_on_cpu():
    assert tf.config.list_physical_devices("GPU") == []
    assert jit_compile() is False  # auto, on a CPU-only machine
    with jit_compilation(True):
        assert jit_compile() is True
        with jit_compilation(False):
            assert jit_compile() is False
        assert jit_compile() is True
    with jit_compilation("auto"):
        assert jit_compile() is False
    assert jit_compile() is False


def _pairs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(rng.integers(3, 50, rng.integers(1, 40)), rng.integers(3, 50, rng.integers(1, 40))) for _ in range(n)]
    ds = tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=(
        tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64)))
    return rows, ds.map(lambda s, t: {"source": s, "target": t})


@pytest.mark.parametrize("padded", [True, False])
def test_padded_batches_have_one_shape_per_bucket_and_the_same_tokens(padded):
    rows, ds = _pairs()
    boundaries = bucket_boundaries(40, 8)
    batches = bucketed_batches(ds.repeat(), lambda x: tf.maximum(tf.shape(x["source"])[0], tf.shape(x["target"])[0]),
                               40, 8, 256, {"source": tf.constant(0, tf.int64), "target": tf.constant(0, tf.int64)},
                               pad_to_bucket=padded)
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
    for setting in ("true", "false"):
        dump = tmp_path / f"dump-{setting}"
        out = tfkd("run", spec, "--stages", "vocab,train", "--set", f"train.jit_compile={setting}", "--set",
                   f"name=xla_{setting}", env_extra={
                       "TFKD_DATA_DIR": data_dir,
                       "XLA_FLAGS": f"--xla_dump_to={dump} --xla_dump_hlo_module_re=.*one_step_on_data.*"})
        assert out.returncode == 0, out.stderr[-3000:]
        counts[setting] = _compiled_programs(dump)
        if setting == "true":
            buckets = re.search(r"batches padded to (\d+) bucket lengths \(8, 16, 24, 32, 41\) for XLA", out.stderr)
            assert buckets, out.stderr[-3000:]
    train_programs = counts["true"][0]  # the training step compiles first, validation after
    assert 1 <= len(train_programs) <= int(buckets.group(1)) == 5, counts
    assert counts["false"] == []  # jit_compile: false compiles nothing
