"""Checkpoint keeping and averaging (tfkd/training/averaging.py) against NumPy, and
``train.keep_last`` / ``train.average_last`` / ``train.keep_best`` / ``tfkd average`` in a real
run."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tfkd, write_spec

from tfkd.training.averaging import KeepLastCheckpoints, average_weights, kept_checkpoints


def model():
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    net.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return net


def test_the_last_n_checkpoints_are_kept_and_their_mean_is_the_average(tmp_path):
    net = model()
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    y = x.sum(1, keepdims=True)
    snapshots = {}

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots[int(self.model.optimizer.iterations.numpy())] = [w.copy() for w in self.model.get_weights()]

    keep = KeepLastCheckpoints(net, str(tmp_path / "checkpoints"), keep=3)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat()
    net.fit(data, steps_per_epoch=2, epochs=5, verbose=0, callbacks=[Snapshot(), keep])
    kept = kept_checkpoints(str(tmp_path / "checkpoints"))
    assert [step for step, _ in kept] == [6, 8, 10]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [f"step-0000000{s}.weights.h5" for s in (6, 8)] + [
        "step-00000010.weights.h5"
    ]
    averaged = average_weights(model(), [path for _, path in kept[-2:]])
    for got, *parts in zip(averaged.get_weights(), snapshots[8], snapshots[10]):
        np.testing.assert_allclose(got, np.mean(parts, axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="no checkpoints"):
        average_weights(model(), [])


@pytest.mark.slow
def test_a_run_keeps_averages_and_translates_with_averaged_weights(tmp_path, data_dir):
    spec = write_spec(tmp_path, "tiny", steps=6, every=2)
    out = tfkd(
        "run",
        spec,
        "--stages",
        "vocab,train",
        "--set",
        "train.keep_last=3",
        "--set",
        "train.average_last=2",
        "--set",
        "train.keep_best={metric: loss}",
        "--set",
        "data.train_limit=120",
        env_extra={"TFKD_DATA_DIR": data_dir},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "tiny"
    results = json.load(open(run / "train" / "stage.json"))["results"]
    assert results["averaged_steps"] == [4, 6]
    kept = kept_checkpoints(str(run / "train" / "checkpoints"))
    assert [step for step, _ in kept] == [2, 4, 6]

    # the saved student is the mean of the last two kept checkpoints
    from tfkd.pipeline import open_run
    from tfkd.stages import load_student

    _, _, context = open_run(str(run))
    student = load_student(context)
    expected = average_weights(load_student(context), [path for _, path in kept[-2:]])
    for a, b in zip(student.get_weights(), expected.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    # train.keep_best: the checkpoint with the lowest validation loss, kept aside
    best = results["keep_best"]
    assert best["metric"] == "loss" and best["best_step"] in (2, 4, 6)
    assert best["weights"] == os.path.join("checkpoints", "best.weights.h5")  # in the stage folder
    at_best = load_student(context, weights=dict(kept)[best["best_step"]]).get_weights()
    for a, b in zip(load_student(context, weights=str(run / "train" / best["weights"])).get_weights(), at_best):
        np.testing.assert_array_equal(a, b)

    average = tfkd("average", str(run), "--last", "3")
    assert average.returncode == 0, average.stderr[-3000:]
    target = run / "train" / "checkpoints" / "average-last-3.weights.h5"
    assert average.stdout.strip() == f"averaged steps 2, 4, 6 of train into {target} (use it with --weights)"
    three = average_weights(load_student(context), [path for _, path in kept])
    for a, b in zip(load_student(context, weights=str(target)).get_weights(), three.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    (tmp_path / "in.de").write_text("Ein Hund läuft.\nZwei Männer stehen.\n", encoding="utf-8")
    translated = tfkd("translate", str(run), "-i", str(tmp_path / "in.de"), "--weights", str(target))
    assert translated.returncode == 0, translated.stderr[-3000:]
    assert len(translated.stdout.splitlines()) == 2
    too_many = tfkd("average", str(run), "--last", "4")
    assert too_many.returncode == 1
    assert too_many.stderr.strip().splitlines()[-1] == (
        "tfkd: error: --last 4: the train stage kept 3 checkpoints (steps 2, 4, 6)"
    )
    # an -o Keras cannot write is one line before any work, and leaves nothing behind
    for output, says in [
        ("avg.h5", "Keras weights files end in .weights.h5; give, say, avg.weights.h5"),
        (f"{tmp_path / 'missing'}/", "is a directory; give a file name ending in .weights.h5"),
        (str(tmp_path / "missing" / "avg.weights.h5"), f"folder {tmp_path / 'missing'} does not exist"),
    ]:
        refused = tfkd("average", str(run), "-o", output, cwd=tmp_path)
        assert refused.returncode == 1 and refused.stderr.splitlines() == [f"tfkd: error: -o {output}: {says}"]
    assert not (tmp_path / "missing").exists() and not (tmp_path / "avg.h5").exists()
