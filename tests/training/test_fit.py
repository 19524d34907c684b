"""fit_trainer: a stage's training loop, as its FitSettings say (a tiny Transformer learning to
reverse ids, a few steps)."""

import os

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
