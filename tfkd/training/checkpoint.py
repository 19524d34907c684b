"""A training stage's checkpoint: weights, optimizer, random streams and (inside an epoch) the
running metrics, written whole into a folder of its own and put in place of the last one, so a
kill anywhere leaves one whole checkpoint; restored to go on from its step."""

import contextlib
import glob
import json
import logging
import math
import os
import shutil
import signal
import zipfile

import keras
import numpy as np

from tfkd import stopping
from tfkd.errors import StageError, first_line
from tfkd.training.averaging import save_weights_atomic

log = logging.getLogger("tfkd")


def _seed_states(model):
    """The state variables of the seed generators of ``model``'s layers (dropout's among them),
    in a fixed order: a resumed stage continues their random streams instead of restarting them."""
    states, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", []):
            if id(generator.state) not in seen:
                seen.add(id(generator.state))
                states.append(generator.state)
    return states


# a checkpoint written inside an epoch (a graceful stop) keeps the epoch's running metrics here
METRICS_FILE = "metrics.npz"


class _Unreadable(Exception):
    """A checkpoint file that cannot be read: its path and why."""


@contextlib.contextmanager
def _reading(path):
    """A checkpoint file that cannot be read (truncated, not its format, changed by hand) is an
    :class:`_Unreadable` naming it."""
    try:
        yield
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise _Unreadable(f"{path}: the checkpoint cannot be read ({first_line(e)})") from None


# what a train stage's divergence message suggests (TrainStage.resumable lets these resume)
TRAIN_HINT = (
    "Lower train.learning_rate or set train.clip_norm and run the same command with --set "
    "train.learning_rate=... (or train.clip_norm=...): the stage goes on from that checkpoint."
)


class StageCheckpoint(keras.callbacks.Callback):
    """Saves model and optimizer state at every epoch end, atomically, and restores it.

    A non-finite loss stops training before the next save, so the checkpoint on disk is
    always the last good one; :attr:`failure` then holds the message to show, naming the
    ``stage`` and the spec keys to change (``hint``). Training stops after exactly
    ``total_steps`` optimizer steps, even when that is not a whole number of epochs (the last
    epoch is cut short and still checkpointed).
    """

    def __init__(self, workdir, stage="train", total_steps=None, hint=TRAIN_HINT, batches_per_step=1, restore_dir=None):
        super().__init__()
        self.batches_per_step = batches_per_step  # train.accumulate: an optimizer step is this many batches
        self.directory = os.path.join(workdir, "checkpoint")
        # restore_dir: another work folder whose checkpoint this one resumes from (the chief's)
        self.restore_from = os.path.join(restore_dir, "checkpoint") if restore_dir else self.directory
        self.stage = stage
        self.total_steps = total_steps
        self.hint = hint
        self.failure = None
        self._batches_done = None
        self._pending_metrics = None

    @staticmethod
    def _files(directory):
        """``(weights, random streams, state)`` paths of a checkpoint in ``directory``."""
        return tuple(os.path.join(directory, name) for name in ("trainer.weights.h5", "random.npz", "state.json"))

    @staticmethod
    def _metric_variables(model):
        # the running sums of the trainer's loss terms and metrics, which Keras resets as each
        # epoch begins: a checkpoint inside an epoch keeps them
        return [v for metric in model.metrics for v in metric.variables]

    def restore(self, trainer):
        """Load the last checkpoint into ``trainer``; returns the number of whole epochs it
        holds (``trainer.optimizer.iterations`` is its step: :func:`tfkd.training.fit.fit_resumed`
        goes on from there, also from a step inside an epoch). A checkpoint that cannot be read
        (a damaged disk, a file changed by hand) falls back to the one written before it, with a
        warning; when none can be read, one line names the damaged file and the way back."""
        for stale in self._cut_writes():  # left by a kill: no process goes on with them
            shutil.rmtree(stale, ignore_errors=True)
        folders = whole_checkpoints(self.restore_from)
        first_error = None
        for i, folder in enumerate(folders):
            try:
                return self._restore_from(folder, trainer)
            except _Unreadable as e:
                first_error = first_error or e
                if i + 1 == len(folders):
                    workdir = os.path.dirname(self.restore_from)
                    before = " (nor can the one before it)" if i else ""
                    raise StageError(
                        f"{self.stage}: {first_error}{before}; delete {workdir} to train this stage from its "
                        "start (the finished stages are kept)"
                    ) from None
                log.warning(
                    "%s: %s; going on from the checkpoint before it (step %s)",
                    self.stage,
                    e,
                    _step_of(folders[i + 1]),
                )
        return 0

    def _restore_from(self, folder, trainer):
        weights_path, random_path, state_path = self._files(folder)
        with _reading(state_path):
            with open(state_path) as f:
                state = json.load(f)
            epoch = int(state["epoch"])
        with _reading(weights_path):
            trainer.load_weights(weights_path)
        seeds = _seed_states(trainer)
        if os.path.exists(random_path):
            with _reading(random_path), np.load(random_path) as saved:
                streams = [saved[f"s{i}"] for i in range(len(saved.files))] if len(saved.files) == len(seeds) else []
            for state_variable, value in zip(seeds, streams):
                state_variable.assign(value)
        self._pending_metrics = None
        metrics_path = os.path.join(folder, METRICS_FILE)
        if state.get("inside_epoch") and os.path.exists(metrics_path):
            # put back once the epoch it was inside begins
            with _reading(metrics_path), np.load(metrics_path) as saved:
                self._pending_metrics = [saved[f"m{i}"] for i in range(len(saved.files))]
        return epoch

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        pending, self._pending_metrics = self._pending_metrics, None
        if pending is not None:  # Keras has just reset them: the sums of the stopped epoch's steps
            variables = self._metric_variables(self.model)
            if len(variables) == len(pending):
                for variable, value in zip(variables, pending):
                    variable.assign(value)
        self._batches_done = self._step() * self.batches_per_step

    def on_train_batch_end(self, batch, logs=None):
        # counted here, not read from the optimizer: no device sync per step
        if getattr(self, "_batches_done", None) is None:
            self._batches_done = self._step() * self.batches_per_step
        self._batches_done += 1
        if self.total_steps is not None and self._batches_done >= self.total_steps * self.batches_per_step:
            self.model.stop_training = True
        logs = logs or {}
        loss = float(logs.get("loss", 0.0))
        if not math.isfinite(loss):
            self.model.stop_training = True
            kept = "No checkpoint was written yet (the stage starts over)."
            step = checkpoint_step(os.path.dirname(self.directory))
            if step is not None:
                kept = f"The last good checkpoint (step {step}) is kept in {self.directory}."
            terms = [
                f"{name} {float(value)}"
                for name, value in logs.items()
                if name not in ("loss", "tokens", "grad_norm") and not math.isfinite(float(value))
            ]
            self.failure = (
                f"{self.stage}: the loss became {loss} at step {self._step()}"
                f"{' (' + ', '.join(terms) + ')' if terms else ''}; training stopped. "
                f"{kept} {self.hint}"
            )
        elif (
            stopping.stop_requested()
            and not self.model.stop_training
            and not self._batches_done % self.batches_per_step
        ):
            self._stop_here()

    def _stop_here(self):
        """A signal asked the run to stop (:mod:`tfkd.stopping`): checkpoint this step (the
        epoch it cuts short is finished first when the stage goes on) and stop the command."""
        signum = stopping.stop_requested()
        self._save(self._epoch, inside_epoch=True)
        step = self._batches_done // self.batches_per_step
        of = f" of {self.total_steps}" if self.total_steps is not None else ""
        raise stopping.StopSignal(
            signum,
            f"{self.stage}: stopped at step {step}{of} by {signal.Signals(signum).name} "
            f"({stopping.seconds_since_request():.1f}s after it), checkpoint written; "
            f"`{stopping.resume_command()}` goes on from it",
        )

    def on_epoch_end(self, epoch, logs=None):
        if self.failure:
            return
        self._save(epoch + 1)

    def _save(self, epochs_done, inside_epoch=False):
        """Write the checkpoint (weights, random streams, ``inside_epoch``: the epoch's running
        metric sums, then the state that names them) into a folder of its own, and put the
        folder in place of the last one (:func:`replace_checkpoint`): a kill anywhere in here
        leaves one whole checkpoint, never the new weights beside the old random streams."""
        new = f"{self.directory}.new-{os.getpid()}"
        shutil.rmtree(new, ignore_errors=True)
        os.makedirs(new)
        weights_path, random_path, state_path = self._files(new)
        save_weights_atomic(self.model, weights_path)
        # the random streams of dropout and other seeded layers, which Keras' weights leave out
        np.savez(random_path, **{f"s{i}": v.numpy() for i, v in enumerate(_seed_states(self.model))})
        state = {"epoch": epochs_done, "step": self._step()}
        if inside_epoch:
            metrics = {f"m{i}": v.numpy() for i, v in enumerate(self._metric_variables(self.model))}
            np.savez(os.path.join(new, METRICS_FILE), **metrics)
            state["inside_epoch"] = True
        with open(state_path, "w") as f:  # the folder is not in place yet: no need to rename
            json.dump(state, f)
        replace_checkpoint(new, self.directory)

    def _cut_writes(self):
        """The folders of checkpoint writes a kill cut short (``checkpoint.new-PID``)."""
        return glob.glob(glob.escape(self.directory) + ".new-*")

    def cleanup(self, keep_last=False):
        """Remove the checkpoints (``keep_last``: all but the last whole one, which a finished
        stage keeps to go on from with more steps)."""
        last = whole_checkpoint(self.directory)
        if keep_last and last != self.directory and os.path.isdir(last):
            shutil.rmtree(self.directory, ignore_errors=True)
            os.rename(last, self.directory)
        kept = [self.directory] if keep_last else []
        folders = [self.directory, self.directory + OLD_SUFFIX, self.directory + PREVIOUS_SUFFIX, *self._cut_writes()]
        for path in folders:
            if path not in kept:
                shutil.rmtree(path, ignore_errors=True)


# a checkpoint folder being replaced by a newer one is kept under this suffix until the new one
# is in place; then it is kept under the second, the checkpoint a damaged last one falls back to
OLD_SUFFIX = ".old"
PREVIOUS_SUFFIX = ".previous"


def replace_checkpoint(new, directory):
    """Put the whole checkpoint folder ``new`` in place of ``directory``: the last whole
    checkpoint moves to ``directory.old``, ``new`` is renamed to ``directory``, then the old
    one becomes ``directory.previous`` (in place of the one before it). Cut between two renames,
    :func:`whole_checkpoints` still finds the last whole checkpoint first."""
    old, previous = directory + OLD_SUFFIX, directory + PREVIOUS_SUFFIX
    if os.path.exists(os.path.join(directory, "state.json")):
        shutil.rmtree(old, ignore_errors=True)
        os.rename(directory, old)
    else:  # nothing whole in it (or no folder at all); a cut write may have left the old one
        shutil.rmtree(directory, ignore_errors=True)
    os.rename(new, directory)
    if os.path.exists(os.path.join(old, "state.json")):
        shutil.rmtree(previous, ignore_errors=True)
        os.rename(old, previous)


def whole_checkpoints(directory):
    """The folders holding whole checkpoints written to ``directory``, the newest first: itself
    (or ``directory.old`` when a write was cut between :func:`replace_checkpoint`'s renames),
    then ``directory.previous``."""
    candidates = (directory, directory + OLD_SUFFIX, directory + PREVIOUS_SUFFIX)
    return [c for c in candidates if os.path.exists(os.path.join(c, "state.json"))]


def whole_checkpoint(directory):
    """The folder holding the last whole checkpoint written to ``directory`` (``directory``
    itself when there is none)."""
    return (whole_checkpoints(directory) or [directory])[0]


def _step_of(folder):
    try:
        with open(os.path.join(folder, "state.json")) as f:
            return int(json.load(f)["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def checkpoint_step(workdir):
    """The optimizer step of the :class:`StageCheckpoint` in ``workdir``, or ``None`` when it
    holds none."""
    return _step_of(whole_checkpoint(os.path.join(workdir, "checkpoint")))
