"""Checkpoints: atomic saves, restore, and a NaN loss that keeps the last good checkpoint."""

import json
import logging
import math
import os

import keras
import numpy as np
import pytest

from tfkd.training.checkpoint import StageCheckpoint


def model_and_data():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    x = np.random.rand(8, 3).astype("float32")
    return model, x, x.sum(1, keepdims=True)


def test_checkpoint_restores_weights_optimizer_and_epoch(tmp_path):
    model, x, y = model_and_data()
    checkpoint = StageCheckpoint(str(tmp_path))
    model.fit(x, y, epochs=2, steps_per_epoch=1, callbacks=[checkpoint], verbose=0)
    state = json.load(open(tmp_path / "checkpoint" / "state.json"))
    assert state == {"epoch": 2, "step": 2}
    assert sorted(os.listdir(tmp_path / "checkpoint")) == ["random.npz", "state.json", "trainer.weights.h5"]

    fresh, _, _ = model_and_data()
    fresh.optimizer.build(fresh.trainable_variables)
    assert StageCheckpoint(str(tmp_path)).restore(fresh) == 2
    assert int(fresh.optimizer.iterations.numpy()) == 2
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "name, damage",
    [
        ("trainer.weights.h5", lambda data: data[:3000]),  # cut short
        ("state.json", lambda data: b'{"epoch": 2, "st'),
        ("state.json", lambda data: b'{"step": 2}'),  # no epoch
        ("random.npz", lambda data: b"garbage"),
    ],
)
def test_a_damaged_checkpoint_falls_back_to_the_one_before_it_and_then_is_one_line(tmp_path, name, damage, caplog):
    from tfkd.errors import StageError

    model, x, y = model_and_data()
    at_step_1 = []
    keep_first = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: at_step_1.append(model.get_weights()))
    model.fit(
        x, y, epochs=2, steps_per_epoch=1, callbacks=[StageCheckpoint(str(tmp_path), "train"), keep_first], verbose=0
    )
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "checkpoint.previous"]
    path = tmp_path / "checkpoint" / name
    path.write_bytes(damage(path.read_bytes()))

    def restored():
        fresh, _, _ = model_and_data()
        fresh.optimizer.build(fresh.trainable_variables)
        return fresh, StageCheckpoint(str(tmp_path), "train").restore(fresh)

    with caplog.at_level(logging.WARNING, logger="tfkd"):
        fresh, epochs = restored()
    assert epochs == 1 and int(fresh.optimizer.iterations.numpy()) == 1
    for a, b in zip(at_step_1[0], fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "tfkd"]
    assert warning.startswith(f"train: {path}: the checkpoint cannot be read (")
    assert warning.endswith("; going on from the checkpoint before it (step 1)")

    # the one before it damaged too: one line naming the damaged file and the way back
    before = tmp_path / "checkpoint.previous" / name
    before.write_bytes(damage(before.read_bytes()))
    with pytest.raises(StageError) as error:
        restored()
    message = str(error.value)
    assert message.startswith(f"train: {path}: the checkpoint cannot be read (") and "\n" not in message
    assert message.endswith(
        f"(nor can the one before it); delete {tmp_path} to train this stage from its start "
        "(the finished stages are kept)"
    )


def test_a_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model, x, y = model_and_data()
    checkpoint = StageCheckpoint(str(tmp_path))
    model.fit(x, y, epochs=1, steps_per_epoch=1, callbacks=[checkpoint], verbose=0)
    good = model.get_weights()
    checkpoint.on_train_batch_end(0, {"loss": math.nan, "xe": math.inf, "nll": 2.0, "grad_norm": math.nan})
    assert model.stop_training
    assert checkpoint.failure == (
        "train: the loss became nan at step 1 (xe inf); training stopped. The last good checkpoint (step 1) "
        f"is kept in {tmp_path}/checkpoint. Lower train.learning_rate or set train.clip_norm and run the same "
        "command with --set train.learning_rate=... (or train.clip_norm=...): the stage goes on from that checkpoint."
    )
    model.set_weights([w * np.nan for w in good])
    checkpoint.on_epoch_end(1)  # must not overwrite the good checkpoint
    assert json.load(open(tmp_path / "checkpoint" / "state.json"))["epoch"] == 1
    fresh, _, _ = model_and_data()
    fresh.optimizer.build(fresh.trainable_variables)
    checkpoint.restore(fresh)
    assert all(np.isfinite(w).all() for w in fresh.get_weights())


def test_a_restored_checkpoint_continues_dropout_s_random_stream(tmp_path):
    """Two epochs straight, or one, a restore into a fresh model and one more: the same weights
    (Keras' weights files leave out the seed generators' states; the checkpoint keeps them)."""
    import tensorflow as tf

    def build():
        keras.utils.set_random_seed(0)
        net = keras.Sequential(
            [keras.Input((3,)), keras.layers.Dense(8), keras.layers.Dropout(0.5), keras.layers.Dense(1)]
        )
        net.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
        return net

    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    data = tf.data.Dataset.from_tensors((x, x.sum(1, keepdims=True))).repeat()
    straight = build()
    straight.fit(data, steps_per_epoch=3, epochs=2, verbose=0)
    first = build()
    first.fit(data, steps_per_epoch=3, epochs=1, verbose=0, callbacks=[StageCheckpoint(str(tmp_path))])
    resumed = build()  # a new process: the seeds start over
    resumed.optimizer.build(resumed.trainable_variables)
    epoch = StageCheckpoint(str(tmp_path)).restore(resumed)
    resumed.fit(data, steps_per_epoch=3, epochs=2, initial_epoch=epoch, verbose=0)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_training_stops_after_exactly_total_steps_mid_epoch(tmp_path):
    import tensorflow as tf

    model, x, y = model_and_data()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(2).repeat()
    checkpoint = StageCheckpoint(str(tmp_path), total_steps=10)
    history = model.fit(data, steps_per_epoch=4, epochs=3, callbacks=[checkpoint], verbose=0, shuffle=False)
    assert int(model.optimizer.iterations.numpy()) == 10  # not 12: the last epoch is cut short
    assert len(history.history["loss"]) == 3
    # ... and still checkpointed, at the step it stopped
    assert json.load(open(tmp_path / "checkpoint" / "state.json")) == {"epoch": 3, "step": 10}


def test_the_nan_message_names_the_stage_and_ends_with_the_hint(tmp_path):
    model, x, y = model_and_data()
    hint = "Lower distill.finetune.learning_rate."
    checkpoint = StageCheckpoint(str(tmp_path), stage="teacher_finetune", hint=hint)
    checkpoint.set_model(model)
    checkpoint.on_epoch_begin(0)
    checkpoint.on_train_batch_end(0, {"loss": math.inf})
    assert model.stop_training
    assert checkpoint.failure.startswith("teacher_finetune: the loss became inf at step 0; training stopped.")
    assert checkpoint.failure.endswith(
        f"training stopped. No checkpoint was written yet (the stage starts over). {hint}"
    )


def test_training_monitor_writes_parameter_counts_and_losses_to_tensorboard(tmp_path):
    import tensorflow as tf

    from tfkd.training.callbacks import TrainingMonitor

    model, x, y = model_and_data()
    monitor = TrainingMonitor(str(tmp_path), log_every=1, parameter_counts={"trainable": 4, "frozen": 7})
    model.fit(x, y, epochs=1, steps_per_epoch=2, callbacks=[monitor], verbose=0)
    values = {}
    for path in tmp_path.iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    assert values["parameters/trainable"] == [4.0] and values["parameters/frozen"] == [7.0]
    assert any(tag.endswith("loss") for tag in values), sorted(values)


class _Terminal:
    """A stdout that says it is a terminal and keeps what is written."""

    def __init__(self):
        self.text = []

    def isatty(self):
        return True

    def write(self, text):
        self.text.append(text)

    def flush(self):
        pass


def _fit_with_progress(monkeypatch, stream, steps=10):
    import sys

    import tensorflow as tf

    from tfkd.training.callbacks import training_callbacks

    monkeypatch.delenv("TFKD_QUIET_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stdout", stream)
    model, x, y = model_and_data()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(2).repeat()
    checkpoint = StageCheckpoint(os.path.join(str(stream.tmp), "work"), total_steps=steps)
    model.fit(
        data, steps_per_epoch=4, epochs=3, callbacks=[checkpoint, *training_callbacks(steps)], verbose=0, shuffle=False
    )


def test_on_a_terminal_progress_is_a_bar_over_the_stage_steps(monkeypatch, tmp_path):
    terminal = _Terminal()
    terminal.tmp = tmp_path
    _fit_with_progress(monkeypatch, terminal)
    shown = "".join(terminal.text)
    assert "10/10" in shown and "step" in shown  # the stage's steps, not the epoch's
    assert "Epoch" not in shown and "4/4" not in shown
    assert "loss:" in shown


def test_without_a_terminal_there_is_no_bar(monkeypatch, tmp_path):
    import io

    pipe = io.StringIO()
    pipe.tmp = tmp_path
    _fit_with_progress(monkeypatch, pipe)
    assert pipe.getvalue() == ""
    terminal = _Terminal()
    terminal.tmp = tmp_path / "quiet"
    monkeypatch.setenv("TFKD_QUIET_PROGRESS", "1")
    import sys

    from tfkd.progress import bars_enabled

    monkeypatch.setattr(sys, "stdout", terminal)
    assert not bars_enabled()  # tfkd --quiet sets it


def fit_validated_on_minus_y(model, callback, epochs):
    """Fit ``model`` on y, validated on -y (the validation loss rises after the first epochs),
    two steps an epoch; returns the history and ``[(val_loss, weights)]`` per epoch."""
    import tensorflow as tf

    _, x, y = model_and_data()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat()
    valid = tf.data.Dataset.from_tensor_slices((x, -y)).batch(8)
    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append((logs["val_loss"], [w.copy() for w in self.model.get_weights()]))

    history = model.fit(
        data, validation_data=valid, steps_per_epoch=2, epochs=epochs, verbose=0, callbacks=[Snapshot(), callback]
    )
    return history, snapshots


def test_early_stop_keeps_the_best_weights_and_resumes_its_count(tmp_path):
    """Trained on y and validated on -y: the validation loss gets worse every epoch after the
    first, so with patience 2 training stops after epoch 3 and the epoch-1 weights are kept."""
    from tfkd.training.callbacks import KeepBest

    model, _, _ = model_and_data()
    stopper = KeepBest(model, str(tmp_path), "train", "loss", patience=2)
    history, snapshots = fit_validated_on_minus_y(model, stopper, epochs=10)
    losses = history.history["val_loss"]
    assert len(losses) == 3 and losses[0] < losses[1] < losses[2]  # stopped after 2 epochs without a new best
    stopper.restore_best()
    assert stopper.summary() == {
        "early_stop": {"metric": "loss", "best": pytest.approx(losses[0]), "best_step": 2, "stopped_at": 6}
    }
    for restored, best in zip(model.get_weights(), snapshots[0][1]):
        np.testing.assert_array_equal(restored, best)
    # a resumed stage sees that it already stopped
    assert KeepBest(model, str(tmp_path), "train", "loss", patience=2).stopped()
    # higher is better for a metric that is not a loss
    bleu = KeepBest(model, str(tmp_path / "bleu"), "train", "bleu", patience=1)
    model.stop_training = False
    bleu.set_model(model)
    bleu.on_epoch_end(0, {"val_bleu": 10.0})
    model.optimizer.iterations.assign_add(1)  # each validation is at a later step
    bleu.on_epoch_end(1, {"val_bleu": 12.0})
    assert bleu.state["best"] == 12.0 and not model.stop_training
    model.optimizer.iterations.assign_add(1)
    bleu.on_epoch_end(2, {"val_bleu": 11.0})
    assert model.stop_training


def test_keep_best_without_patience_trains_on_and_keeps_the_best_aside(tmp_path):
    """``train.keep_best``: the same falling-then-rising validation loss never stops training;
    the best epoch's weights are in best.weights.h5 and the model keeps its last weights."""
    from tfkd.training.callbacks import KeepBest

    model, _, _ = model_and_data()
    keeper = KeepBest(model, str(tmp_path / "checkpoints"), "train", "loss")
    _, snapshots = fit_validated_on_minus_y(model, keeper, epochs=5)
    assert len(snapshots) == 5 and not keeper.stopped()
    best_epoch = min(range(5), key=lambda e: snapshots[e][0])
    assert best_epoch < 4  # validated on -y: the loss rises after the first epochs
    summary = keeper.summary()["keep_best"]
    assert summary["best_step"] == 2 * (best_epoch + 1) and summary["best"] == pytest.approx(snapshots[best_epoch][0])
    assert summary["weights"] == os.path.join("checkpoints", "best.weights.h5")
    for last, now in zip(snapshots[-1][1], model.get_weights()):
        np.testing.assert_array_equal(last, now)  # the model is not rolled back
    other, _, _ = model_and_data()
    other.load_weights(str(tmp_path / summary["weights"]))
    for kept, best in zip(other.get_weights(), snapshots[best_epoch][1]):
        np.testing.assert_array_equal(kept, best)


def test_early_stop_on_a_metric_validation_does_not_report_is_one_line(tmp_path):
    from tfkd.training.callbacks import KeepBest

    model, _, _ = model_and_data()
    stopper = KeepBest(model, str(tmp_path), "baseline", "blue", patience=2)
    stopper.set_model(model)
    stopper.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.0, "val_bleu": 3.0, "val_tokens": 9})
    assert stopper.failure == (
        "baseline: train.early_stop.metric: 'blue' is not reported by validation here; choices: bleu, loss"
    )
    assert model.stop_training
    keeper = KeepBest(model, str(tmp_path), "baseline", "blue")
    keeper.set_model(model)
    keeper.on_epoch_end(0, {"val_loss": 1.0})
    assert keeper.failure.startswith("baseline: train.keep_best.metric: 'blue' is not reported")


class Cut(Exception):
    """A kill, for a write cut before one of its renames."""


def _dropout_net():
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8), keras.layers.Dropout(0.5), keras.layers.Dense(1)])
    net.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    return net


def _state(net):
    from tfkd.training.checkpoint import _seed_states

    return [*net.get_weights(), *(s.numpy() for s in _seed_states(net))], int(net.optimizer.iterations.numpy())


def test_a_checkpoint_write_cut_before_any_rename_leaves_one_whole_checkpoint(tmp_path, monkeypatch):
    """Killed anywhere inside a checkpoint write (here: before each of the renames that put its
    files in place), the folder restores to the last whole checkpoint or the new one, never to
    new weights beside the older random streams or step (which a resumed run reads on from)."""
    import shutil

    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    y = x.sum(1, keepdims=True)

    def cut_before(rename_number):
        folder = tmp_path / f"cut{rename_number}"
        net = _dropout_net()
        checkpoint = StageCheckpoint(str(folder))
        net.fit(x, y, epochs=1, steps_per_epoch=1, verbose=0, callbacks=[checkpoint])
        before = _state(net)
        net.fit(x, y, epochs=1, steps_per_epoch=1, verbose=0)  # one more step, not saved yet
        after = _state(net)
        renames = []

        def counted(real):
            def rename(*args, **kwargs):
                renames.append(args)
                if len(renames) == rename_number:
                    raise Cut()
                return real(*args, **kwargs)

            return rename

        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", counted(os.replace))
            patch.setattr(os, "rename", counted(os.rename))
            patch.setattr(shutil, "move", counted(shutil.move))
            try:
                checkpoint.on_epoch_end(1)
            except Cut:
                pass
        restored = _dropout_net()
        restored.optimizer.build(restored.trainable_variables)
        checkpoint.restore(restored)
        return before, after, _state(restored), len(renames)

    # a killed write's folder is gone when the stage goes on (a checkpoint kept after training
    # would otherwise carry it into the finished stage)
    stale = tmp_path / "cut0" / "checkpoint.new-1"
    stale.mkdir(parents=True)
    _, after, restored, renames = cut_before(0)  # not cut: the new checkpoint, and how many renames
    assert not stale.exists()
    assert restored[1] == after[1] == 2 and renames >= 3
    for a, b in zip(restored[0], after[0], strict=True):
        np.testing.assert_array_equal(a, b)
    # nothing left beside it but the checkpoint before it, which a damaged last one falls back to
    assert sorted(os.listdir(tmp_path / "cut0")) == ["checkpoint", "checkpoint.previous"]
    for number in range(1, renames + 1):
        before, after, restored, _ = cut_before(number)
        expected = after if restored[1] == after[1] else before
        assert restored[1] == expected[1], number
        for a, b in zip(restored[0], expected[0], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"cut before rename {number}")
