"""Training a compiled trainer as a stage does: :func:`fit_trainer` with its :class:`FitSettings`."""

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from tfkd import stopping
from tfkd.data import without_autotuning
from tfkd.errors import StageError
from tfkd.training.averaging import CHECKPOINTS_DIR, KeepLastCheckpoints, average_weights, kept_checkpoints
from tfkd.training.callbacks import KeepBest, TrainingMonitor, training_callbacks
from tfkd.training.checkpoint import StageCheckpoint

log = logging.getLogger("tfkd")


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """How :func:`fit_trainer` trains, checkpoints, reports and keeps.

    ``steps`` optimizer steps, resumable from a checkpoint written (and validated) every
    ``checkpoint_every`` steps, logged every ``log_every`` steps and to TensorBoard. With
    ``accumulate`` N, a step is one optimizer update of N batches
    (:meth:`~tfkd.training.trainer.Trainer.accumulate_gradients`).

    ``valid_metric``: ``None`` or a callable giving ``{name: value}``, shown at validation;
    ``parameter_counts``: ``{name: count}`` for the log; ``finish()`` saves what the stage
    keeps before the checkpoints are removed; ``hint``: what to tell a user whose training
    diverged (:class:`~tfkd.training.checkpoint.StageCheckpoint`); ``restore_dir``: the work
    folder whose checkpoint to resume from, when not the stage's (a multi-worker run's other
    workers resume from the chief's: :meth:`tfkd.runner.Runner.resume_dir`);
    ``keep_checkpoint``: the last checkpoint (trainer, optimizer and random streams) stays in
    ``workdir/checkpoint`` after training, so that a longer schedule goes on from it.

    Which weights of ``student`` (the model the stage keeps) stay in ``workdir/checkpoints``,
    as the spec's ``train`` section says (:meth:`of_train`): ``keep_last`` (the last N
    checkpoints), ``average_last`` (``student`` ends as the mean of the last N),
    ``keep_best`` (the best by a validation metric) and ``early_stop`` (training stops when
    the metric stops improving and ``student`` ends as the best).
    """

    steps: int
    checkpoint_every: int
    log_every: int
    accumulate: int = 1
    valid_metric: Callable[[], dict] | None = None
    parameter_counts: dict | None = None
    finish: Callable[[], None] | None = None
    hint: str | None = None
    restore_dir: str | None = None
    keep_checkpoint: bool = False
    # a fresh copy of the training pipeline, for going on from a step inside a checkpoint
    # interval with the validations of an uninterrupted run (fit_resumed)
    remake_train_ds: Callable[[], Any] | None = None
    student: Any = None
    keep_last: int = 0
    average_last: int | None = None
    keep_best: Any = None
    early_stop: Any = None

    @classmethod
    def of_train(cls, train, student, **settings):
        """The settings of the spec's ``train`` section (steps, checkpoints, logging, gradient
        accumulation, which weights of ``student`` are kept), and ``settings``."""
        return cls(
            steps=train.steps,
            checkpoint_every=train.checkpoint_every,
            log_every=train.log_every,
            accumulate=train.accumulate,
            student=student,
            keep_last=train.keep_last,
            average_last=train.average_last,
            keep_best=train.keep_best,
            early_stop=train.early_stop,
            **settings,
        )


def fit_trainer(trainer, train_ds, valid_ds, workdir, stage_name, settings):
    """Train a compiled, built ``trainer`` on ``train_ds`` (validated on ``valid_ds``, which may
    be ``None``) as the stage ``stage_name`` does, resumed from and checkpointed to ``workdir``,
    as ``settings`` (:class:`FitSettings`) say. Returns the monitor's summary.

    Under a multi-worker strategy each batch is split across the replicas of every worker
    (:func:`tfkd.distribute.shard_by_batch`), and the workers' weights are compared at the end."""
    from tfkd.distribute import check_workers_agree, shard_by_batch, trains_on_every_worker

    steps, accumulate = settings.steps, settings.accumulate
    trainer.accumulate_gradients(accumulate)
    every_worker = trains_on_every_worker(trainer)
    remake = settings.remake_train_ds
    if every_worker:
        train_ds = shard_by_batch(train_ds)
        remake = remake and (lambda: shard_by_batch(settings.remake_train_ds()))
        valid_ds = valid_ds if valid_ds is None else shard_by_batch(valid_ds)
    checkpoint = _restored_checkpoint(trainer, workdir, stage_name, settings)
    monitor = TrainingMonitor(
        os.path.join(workdir, "tensorboard"),
        settings.log_every,
        valid_metric=settings.valid_metric,
        parameter_counts=settings.parameter_counts,
        total_steps=steps,
        batches_per_step=accumulate,
    )
    kept_dir = os.path.join(workdir, CHECKPOINTS_DIR)
    best, extra = _weight_keepers(settings, valid_ds is not None, kept_dir, stage_name)
    if not (best and best.stopped()):
        fit_resumed(
            trainer,
            train_ds,
            steps,
            settings.checkpoint_every,
            accumulate,
            remake,
            validation_data=valid_ds,
            # what keeps weights (best, last N) writes before the checkpoint that moves the
            # resume point past the validation it saw: killed in between, the resumed run
            # sees that validation again (KeepBest skips what it has seen)
            callbacks=[monitor, *extra, checkpoint, *training_callbacks(steps, accumulate)],
        )
    for failure in (checkpoint.failure, best and best.failure):
        if failure:
            raise StageError(failure)
    if every_worker:
        check_workers_agree(trainer, stage_name)
    summary = monitor.summary()
    summary.update(_final_weights(settings, best, kept_dir, stage_name))
    if settings.finish is not None:
        settings.finish()
    checkpoint.cleanup(keep_last=settings.keep_checkpoint)
    return summary


def _restored_checkpoint(trainer, workdir, stage_name, settings):
    """The stage's :class:`StageCheckpoint`, ``trainer`` restored from it (from
    ``settings.restore_dir`` too, where the run goes on from another stage's work)."""
    checkpoint = StageCheckpoint(
        workdir,
        stage_name,
        total_steps=settings.steps,
        batches_per_step=settings.accumulate,
        restore_dir=settings.restore_dir,
        **({"hint": settings.hint} if settings.hint else {}),
    )
    checkpoint.restore(trainer)
    done = int(trainer.optimizer.iterations.numpy())
    if done:
        log.info("%s: continuing from step %d of %d", stage_name, done, settings.steps)
    return checkpoint


def _weight_keepers(settings, validated, kept_dir, stage_name):
    """``(KeepBest or None, the callbacks that keep weights)``: the best by a validation metric
    (``train.early_stop`` / ``keep_best``) and the last N (``keep_last``, ``average_last``)."""
    extra, best = [], None
    watch = settings.early_stop or settings.keep_best
    if watch is not None:
        if not validated:
            key = "train.early_stop" if settings.early_stop else "train.keep_best"
            raise StageError(f"{stage_name}: {key} needs a validation split to watch")
        best = KeepBest(
            settings.student,
            kept_dir,
            stage_name,
            watch.metric,
            watch.mode,
            getattr(watch, "patience", None),
            restore_dir=settings.restore_dir and os.path.join(settings.restore_dir, CHECKPOINTS_DIR),
        )
        extra.append(best)
    keep_last = max(settings.keep_last, settings.average_last or 0)
    if keep_last:
        extra.append(KeepLastCheckpoints(settings.student, kept_dir, keep_last))
    return best, extra


def _final_weights(settings, best, kept_dir, stage_name):
    """The student's final weights after training: the best ones (``early_stop``) or the
    average of the last ``average_last`` checkpoints; what the summary adds about them."""
    summary = {}
    if best is not None:
        summary.update(best.summary())
        if settings.early_stop:
            best.restore_best()
    if settings.average_last:
        kept = kept_checkpoints(kept_dir)[-settings.average_last :]
        average_weights(settings.student, [path for _, path in kept])
        summary["averaged_steps"] = [step for step, _ in kept]
        log.info(
            "%s: the student is the average of the checkpoints at steps %s",
            stage_name,
            ", ".join(str(step) for step, _ in kept),
        )
    return summary


def fit_resumed(model, train_ds, steps, steps_per_epoch, batches_per_step=1, remake_train_ds=None, **fit_kwargs):
    """``model.fit`` on ``train_ds`` up to ``steps`` optimizer steps, in Keras epochs of
    ``steps_per_epoch`` steps (each ends with a validation and a checkpoint), from the step the
    model's optimizer is at (a restored checkpoint's); the callbacks stop it at ``steps`` (a
    :class:`~tfkd.training.checkpoint.StageCheckpoint` does). Returns the last ``fit``'s history,
    or ``None`` when no step is left.

    The batches the earlier steps read are skipped: the training data is a seeded, repeated
    stream, so the resumed run reads what an uninterrupted one reads next and ends with its
    weights, bit for bit. From a step inside an epoch (a graceful stop, :mod:`tfkd.stopping`,
    or the end of a shorter schedule that a larger ``train.steps`` goes on from), the cut epoch
    is finished in a ``fit`` of its own, so that validations and checkpoints (and what
    ``average_last``, ``keep_best``, ``early_stop`` and the logged running means see) fall on an
    uninterrupted run's steps. That needs ``remake_train_ds()``, a fresh copy of the pipeline:
    a second ``fit`` over ``train_ds`` itself would open another iterator on it, and every
    iterator of a dataset that reshuffles reads another order. The stage built its model from
    one batch of ``train_ds`` (:func:`tfkd.stages.compile_and_build`) before ``fit`` opened the
    second iterator, so one batch is read from the copy first. Without ``remake_train_ds``,
    the epochs count from the step it goes on from. The training and validation pipelines are
    read with tf.data's autotuning off (:func:`tfkd.data.without_autotuning`)."""
    done = int(model.optimizer.iterations.numpy())
    if done >= steps:
        return None
    epoch, into = divmod(done, steps_per_epoch)
    if isinstance(fit_kwargs.get("validation_data"), tf.data.Dataset):
        fit_kwargs["validation_data"] = without_autotuning(fit_kwargs["validation_data"])

    def fit(dataset, start, epoch, length, last_epoch):
        return model.fit(
            without_autotuning(dataset.skip(start * batches_per_step)),
            steps_per_epoch=length * batches_per_step,
            epochs=last_epoch,
            initial_epoch=epoch,
            shuffle=False,
            verbose=0,
            **fit_kwargs,
        )

    with stopping.checkpointing():
        if into and remake_train_ds is None:  # epochs counted from this step
            return fit(train_ds, done, epoch, steps_per_epoch, epoch + math.ceil((steps - done) / steps_per_epoch))
        if into:  # the cut epoch alone, on train_ds's stream
            history = fit(train_ds, done, epoch, steps_per_epoch - into, epoch + 1)
            done, epoch = int(model.optimizer.iterations.numpy()), epoch + 1
            if done != epoch * steps_per_epoch or done >= steps or model.stop_training:
                return history  # stopped inside it: a failure, an early stop or the last step
            train_ds = remake_train_ds()
            # the copy's first batch read, as the stage's was by compile_and_build: opening an
            # iterator is not enough, a repeated stream draws its shuffles' seeds at its first
            # batch (a teacher cache's stream then read another order from here on)
            next(iter(train_ds))
        return fit(train_ds, done, epoch, steps_per_epoch, math.ceil(steps / steps_per_epoch))


__all__ = ["FitSettings", "fit_resumed", "fit_trainer"]
