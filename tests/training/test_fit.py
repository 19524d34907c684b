"""fit_trainer: a stage's training loop, as its FitSettings say (a tiny Transformer learning to
reverse ids, a few steps)."""

import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkd import registry
from tfkd.models.transformer import TransformerSeq2Seq
from tfkd.runner import StageError
from tfkd.spec import KeepBestSpec, TrainSpec
from tfkd.stages import compile_and_build
from tfkd.training.fit import FitSettings, fit_trainer
from tfkd.training.trainer import SupervisedTrainer


def reversal_batches():
    rng = np.random.default_rng(0)
    source = rng.integers(3, 30, (16, 6)).astype("int32")
    target = np.concatenate([np.ones((16, 1), "int32"), source[:, ::-1], np.full((16, 1), 2, "int32")], axis=1)
    inputs = {"source_ids": source, "decoder_ids": target[:, :-1]}
    return tf.data.Dataset.from_tensor_slices((inputs, target[:, 1:])).batch(4).repeat()


def compiled_trainer():
    keras.utils.set_random_seed(1)
    student = TransformerSeq2Seq(
        30,
        30,
        encoder_layers=1,
        decoder_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        num_heads=2,
        dropout=0.0,
        pad_id=0,
    )
    trainer = SupervisedTrainer(student, registry.lookup("task", "translation"), label_smoothing=0.0)
    compile_and_build(trainer, keras.optimizers.Adam(1e-3), reversal_batches(), jit_compile=False)
    return student, trainer


def test_settings_of_the_train_section():
    train = TrainSpec(
        steps=6,
        checkpoint_every=2,
        log_every=1,
        accumulate=2,
        keep_last=3,
        average_last=2,
        keep_best=KeepBestSpec(metric="nll"),
    )
    student = object()
    settings = FitSettings.of_train(train, student, hint="h")
    assert (settings.steps, settings.checkpoint_every, settings.log_every, settings.accumulate) == (6, 2, 1, 2)
    assert (settings.keep_last, settings.average_last, settings.keep_best, settings.early_stop) == (
        3,
        2,
        train.keep_best,
        None,
    )
    assert settings.student is student and settings.hint == "h"


def test_fit_trains_keeps_averages_and_finishes(tmp_path):
    student, trainer = compiled_trainer()
    finished = []
    settings = FitSettings(
        steps=4,
        checkpoint_every=2,
        log_every=1,
        student=student,
        keep_last=1,
        average_last=2,
        parameter_counts={"trainable": 1},
        finish=lambda: finished.append(True),
    )
    summary = fit_trainer(trainer, reversal_batches(), None, str(tmp_path), "train", settings)
    assert int(trainer.optimizer.iterations.numpy()) == 4 and finished == [True]
    assert summary["averaged_steps"] == [2, 4]  # kept as average_last needs, more than keep_last
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["step-00000002.weights.h5", "step-00000004.weights.h5"]
    assert not (tmp_path / "checkpoint").exists()  # the resume checkpoint goes once the stage is done


def test_keep_best_needs_a_validation_split(tmp_path):
    student, trainer = compiled_trainer()
    settings = FitSettings(steps=2, checkpoint_every=2, log_every=1, student=student, keep_best=KeepBestSpec())
    with pytest.raises(StageError, match="^train: train.keep_best needs a validation split to watch$"):
        fit_trainer(trainer, reversal_batches(), None, str(tmp_path), "train", settings)


class SignalAt(keras.callbacks.Callback):
    """Sends this process ``signum`` at the end of batch ``batch`` (counted over every fit),
    and records the steps at which epochs (validations, checkpoints) end."""

    def __init__(self, batch=None, signum=None):
        super().__init__()
        self.batch, self.signum, self.seen, self.epoch_ends = batch, signum, 0, []

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.batch:
            os.kill(os.getpid(), self.signum)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(int(self.model.optimizer.iterations.numpy()))


def _dropout_model():
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8), keras.layers.Dropout(0.5), keras.layers.Dense(1)])
    net.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    net.optimizer.build(net.trainable_variables)
    return net


def _stream():
    """A pipeline that reshuffles: every iterator opened on it reads another order."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True)))
    return data.shuffle(64, seed=5, reshuffle_each_iteration=True).repeat().batch(4)


def _cache_stream():
    """As a teacher cache's (tfkd.teachers.topk_cache.stream_cache): its shards in a
    reshuffled order, interleaved, the records reshuffled in a buffer, repeated."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    records = tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True)))

    def shard(number):
        return records.skip(number * 16).take(16)

    shards = tf.data.Dataset.range(4).shuffle(4, seed=5, reshuffle_each_iteration=True)
    rows = shards.interleave(shard, cycle_length=4, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return rows.shuffle(16, seed=5, reshuffle_each_iteration=True).repeat().batch(4)


def _built_stream(stream=_stream):
    """As a stage's: the model is built from one batch (compile_and_build) before fit."""
    stream = stream()
    next(iter(stream))
    return stream


@pytest.mark.parametrize("stream", [_stream, _cache_stream], ids=["examples", "teacher_cache"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_epoch_checkpoints_that_step_and_the_resumed_run_equals_a_straight_one(tmp_path, signum, stream):
    """SIGTERM or SIGINT at step 5 of 12 (epochs of 4 steps): the step ends, the checkpoint
    holds step 5 and StopSignal names it; going on, the cut epoch is finished alone (on a fresh
    copy of the reshuffling pipeline after it), so validations fall at steps 8 and 12 as in a
    straight run, and the weights are bit for bit a straight run's (the data stream skipped,
    the dropout streams restored), also on a stream read as a teacher cache's."""
    from tfkd.stopping import StopSignal, handling_stop_signals
    from tfkd.training.checkpoint import StageCheckpoint, checkpoint_step
    from tfkd.training.fit import fit_resumed

    x = np.random.default_rng(1).normal(size=(8, 3)).astype("float32")
    valid = tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True))).batch(4)  # a fixed order
    straight, seen = _dropout_model(), SignalAt()
    whole = fit_resumed(
        straight, _built_stream(stream), 12, 4, remake_train_ds=stream, validation_data=valid, callbacks=[seen]
    )
    assert seen.epoch_ends == [4, 8, 12] and fit_resumed(straight, stream(), 12, 4) is None

    stopped = _dropout_model()
    # the signal comes during step 5 (before the checkpoint callback sees that step end)
    callbacks = [SignalAt(5, signum), StageCheckpoint(str(tmp_path), "train", 12)]
    with handling_stop_signals(30), pytest.raises(StopSignal) as caught:
        fit_resumed(stopped, _built_stream(stream), 12, 4, remake_train_ds=stream, callbacks=callbacks)
    assert caught.value.signum == signum and caught.value.exit_code == 128 + signum
    assert f"train: stopped at step 5 of 12 by {signal.Signals(signum).name}" in caught.value.message
    assert checkpoint_step(str(tmp_path)) == 5
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back

    resumed, seen = _dropout_model(), SignalAt()
    checkpoint = StageCheckpoint(str(tmp_path), "train", 12)
    checkpoint.restore(resumed)
    # the cut epoch's logs are running means over all its steps, as if never stopped
    first_epoch = SignalAt()
    first_epoch.on_epoch_end = lambda epoch, logs=None: first_epoch.epoch_ends.append(dict(logs))
    last = fit_resumed(
        resumed,
        _built_stream(stream),
        12,
        4,
        remake_train_ds=stream,
        validation_data=valid,
        callbacks=[checkpoint, seen, first_epoch],
    )
    assert seen.epoch_ends == [8, 12]
    assert first_epoch.epoch_ends[0]["loss"] == whole.history["loss"][1]
    assert last.history == {k: v[2:] for k, v in whole.history.items()}
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_reads_its_training_and_validation_pipelines_without_autotuning(monkeypatch):
    """Keras deletes each validation pass's iterator when the next begins, and an autotuned
    iterator's deletion waits for tf.data's model thread (20-50 s at most validations of a
    stage): fit_resumed hands Keras both pipelines with autotuning off."""
    from tfkd.training.fit import fit_resumed

    x = np.random.default_rng(1).normal(size=(8, 3)).astype("float32")
    valid = tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True))).batch(4).prefetch(tf.data.AUTOTUNE)
    net, seen = _dropout_model(), {}
    keras_fit = type(net).fit

    def fit(self, x=None, validation_data=None, **kwargs):
        seen["train"], seen["valid"] = x.options().autotune.enabled, validation_data.options().autotune.enabled
        return keras_fit(self, x, validation_data=validation_data, **kwargs)

    monkeypatch.setattr(type(net), "fit", fit)
    fit_resumed(net, _built_stream(), 4, 2, remake_train_ds=_stream, validation_data=valid)
    assert seen == {"train": False, "valid": False} and int(net.optimizer.iterations.numpy()) == 4


def test_a_second_fit_on_the_same_reshuffling_pipeline_would_read_another_order():
    """Why fit_resumed finishes a cut epoch and goes on on a fresh copy of the pipeline."""
    stream = _built_stream()
    first = [b[0].numpy() for b in stream.take(3)]
    again = [b[0].numpy() for b in stream.take(3)]
    copy = [b[0].numpy() for b in _built_stream().take(3)]
    assert not np.array_equal(first, again) and np.array_equal(first, copy)


def test_a_longer_schedule_from_a_step_inside_an_epoch_ends_as_the_straight_run(tmp_path):
    from tfkd.training.checkpoint import StageCheckpoint
    from tfkd.training.fit import fit_resumed

    short = _dropout_model()
    fit_resumed(
        short, _built_stream(), 6, 4, remake_train_ds=_stream, callbacks=[StageCheckpoint(str(tmp_path), "train", 6)]
    )
    longer, seen = _dropout_model(), SignalAt()
    checkpoint = StageCheckpoint(str(tmp_path), "train", 12)
    checkpoint.restore(longer)
    fit_resumed(longer, _built_stream(), 12, 4, remake_train_ds=_stream, callbacks=[checkpoint, seen])
    assert seen.epoch_ends == [8, 12]  # an uninterrupted run's
    straight = _dropout_model()
    fit_resumed(straight, _built_stream(), 12, 4, remake_train_ds=_stream)
    for a, b in zip(straight.get_weights(), longer.get_weights()):
        np.testing.assert_array_equal(a, b)


class Killed(Exception):
    """A kill, in the middle of an epoch end's writes."""


@pytest.mark.parametrize("kill_in", ["checkpoint", "keep_best"])
def test_a_run_killed_at_a_validations_writes_keeps_the_straight_runs_best_and_patience(tmp_path, monkeypatch, kill_in):
    """Killed at the step-6 validation, in the checkpoint's write (after KeepBest wrote its
    state) or as KeepBest begins: the resumed run sees that validation exactly once, so the
    patience count (validations without a new best: the loss watched as higher-is-better, so
    every one after the first) and the best are the uninterrupted run's."""
    from tfkd.spec import EarlyStopSpec
    from tfkd.training import callbacks, checkpoint

    target = (checkpoint.StageCheckpoint, "_save") if kill_in == "checkpoint" else (callbacks.KeepBest, "on_epoch_end")

    def run(folder, kill_at=None):
        student, trainer = compiled_trainer()
        watch = EarlyStopSpec(metric="loss", mode="max", patience=9)
        settings = FitSettings(steps=8, checkpoint_every=2, log_every=2, student=student, early_stop=watch)
        calls = []
        real = getattr(*target)

        def killing(self, *args, **kwargs):
            calls.append(args)
            if len(calls) == kill_at:
                raise Killed()
            return real(self, *args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(*target, killing)
            try:
                summary = fit_trainer(
                    trainer, reversal_batches(), reversal_batches().take(2), str(folder), "t", settings
                )
            except Killed:
                return None
        return summary, json.load(open(folder / "checkpoints" / "best.json")), student.get_weights()

    straight = run(tmp_path / "straight")
    assert straight[1]["waited"] == 3 and straight[1]["best_step"] == 2
    assert run(tmp_path / "killed", kill_at=3) is None  # at the step-6 validation
    resumed = run(tmp_path / "killed")
    assert resumed[0]["early_stop"] == straight[0]["early_stop"] and resumed[1] == straight[1]
    for a, b in zip(resumed[2], straight[2], strict=True):
        np.testing.assert_array_equal(a, b)
