"""Training callbacks: logs, TensorBoard summaries, keeping the best weights, the progress bar
(the resumable checkpoint is :mod:`tfkd.training.checkpoint`)."""

import json
import logging
import os
import time

import keras
import tensorflow as tf

from tfkd.scores import LOWER_IS_BETTER
from tfkd.training.averaging import save_weights_atomic

log = logging.getLogger("tfkd")


def _write_json_atomic(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)


def _epoch_tokens(model):
    """The epoch's running token count so far: 0 as an epoch begins, the stopped steps' after a
    checkpoint from inside an epoch is restored (a trainer's ``tokens`` metric)."""
    counters = [metric for metric in model.metrics if metric.name == "tokens"]
    return float(counters[0].result()) if counters else 0.0


class TrainingMonitor(keras.callbacks.Callback):
    """Logs steps/s and tokens/s and writes TensorBoard summaries.

    Every ``log_every`` steps: loss, nll, learning rate, steps/s, tokens/s. At every epoch
    end: validation loss and, with a ``valid_metric`` (a callable returning ``{name: value}``,
    from the task: greedy BLEU on the first validation sentences for translation), its values.
    """

    def __init__(
        self, log_dir, log_every, valid_metric=None, parameter_counts=None, total_steps=None, batches_per_step=1
    ):
        super().__init__()
        self.total_steps = total_steps
        self.batches_per_step = batches_per_step
        self.writer = tf.summary.create_file_writer(log_dir)
        self.log_every = log_every
        self.valid_metric = valid_metric
        # {"trainable": n, "frozen": m}: written once, as scalars parameters/trainable, ...
        self.parameter_counts = dict(parameter_counts or {})
        self.history = {}
        self._train_seconds = 0.0
        self._train_tokens = 0.0

    def on_train_begin(self, logs=None):
        with self.writer.as_default(step=self._step()):
            for name, count in self.parameter_counts.items():
                tf.summary.scalar(f"parameters/{name}", float(count))
        self.writer.flush()

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self._tick = time.time()
        self._tick_tokens = None  # read as the first batch begins (after a restore of the epoch's sums)
        self._tick_step = self._step()
        self._batches = self._tick_step * self.batches_per_step

    def on_train_batch_begin(self, batch, logs=None):
        if self._tick_tokens is None:
            self._tick_tokens = _epoch_tokens(self.model)

    def on_train_batch_end(self, batch, logs=None):
        # counted here rather than read from the optimizer: no device sync on most steps
        self._batches += 1
        if self._batches % (self.log_every * self.batches_per_step):
            return
        step = self._batches // self.batches_per_step
        logs = logs or {}
        now = time.time()
        tokens = float(logs.get("tokens", 0.0))
        seconds = max(now - self._tick, 1e-9)
        steps_per_second = (step - self._tick_step) / seconds
        tokens_per_second = (tokens - self._tick_tokens) / seconds
        self._train_seconds += seconds
        self._train_tokens += tokens - self._tick_tokens
        self._tick, self._tick_tokens, self._tick_step = now, tokens, step
        learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        values = {k: float(v) for k, v in logs.items() if k != "tokens"}
        values.update(
            learning_rate=learning_rate, steps_per_second=steps_per_second, tokens_per_second=tokens_per_second
        )
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(f"train/{name}", value)
        speed = f"{steps_per_second:.2f} steps/s" + (f" | {tokens_per_second:.0f} tokens/s" if "tokens" in logs else "")
        log.info(
            "step %s | %s | lr %.2e | %s",
            f"{step}/{self.total_steps}" if self.total_steps else step,
            " | ".join(f"{k} {float(v):.3f}" for k, v in logs.items() if k != "tokens"),
            learning_rate,
            speed,
        )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        step = self._step()
        if self.valid_metric is not None:
            logs.update({f"val_{name}": value for name, value in self.valid_metric().items()})
        with self.writer.as_default(step=step):
            for name, value in logs.items():
                if name.startswith("val_"):
                    tf.summary.scalar(f"valid/{name[4:]}", float(value))
        self.writer.flush()
        shown = " | ".join(f"{k} {float(v):.3f}" for k, v in logs.items() if k.startswith("val_") and k != "val_tokens")
        if shown:
            log.info("step %d | %s", step, shown)
        self.history[step] = {k: float(v) for k, v in logs.items()}

    def summary(self):
        result = {}
        if self._train_seconds:
            result["tokens_per_second"] = round(self._train_tokens / self._train_seconds, 1)
        if self.history:
            last = self.history[max(self.history)]
            result.update({k: round(v, 4) for k, v in last.items() if k != "tokens"})
        return result


class KeepBest(keras.callbacks.Callback):
    """``train.keep_best`` and ``train.early_stop``: after each validation (a checkpoint), write
    ``student``'s weights to ``directory/best.weights.h5`` when ``val_<metric>`` is the best so
    far; with ``patience``, stop training when that many validations in a row bring no new
    best. Its state (``best.json``) lives beside the weights, so a resumed stage goes on
    counting; :meth:`restore_best` puts the best weights back into the student.

    Place it after the :class:`TrainingMonitor` (which adds the task's metric to the logs) and
    before the :class:`StageCheckpoint`: a run killed between the two goes on from the
    checkpoint before and validates that step again, which this callback then skips (its state
    records the last step it saw), so the best and the patience count are an uninterrupted
    run's."""

    WEIGHTS = "best.weights.h5"

    def __init__(self, student, directory, stage, metric, mode="auto", patience=None, restore_dir=None):
        super().__init__()
        self.student, self.directory = student, directory
        self.state_path = os.path.join(directory, "best.json")
        # restore_dir: another folder whose state this one goes on from (a multi-worker run's chief's)
        restore_path = os.path.join(restore_dir, "best.json") if restore_dir else self.state_path
        self.weights_path = os.path.join(directory, self.WEIGHTS)
        self.stage, self.metric, self.patience = stage, metric, patience
        self.key = "train.early_stop" if patience else "train.keep_best"
        lower = metric in LOWER_IS_BETTER if mode == "auto" else mode == "min"
        self.better = (lambda a, b: a < b) if lower else (lambda a, b: a > b)
        self.state = {"best": None, "best_step": None, "waited": 0, "stopped_at": None}
        if os.path.exists(restore_path):
            with open(restore_path) as f:
                self.state = json.load(f)
        self.failure = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        key = f"val_{self.metric}"
        if key not in logs:
            shown = sorted(k[4:] for k in logs if k.startswith("val_") and k != "val_tokens")
            self.failure = (
                f"{self.stage}: {self.key}.metric: {self.metric!r} is not reported by validation "
                f"here; choices: {', '.join(shown) or 'none (no validation split)'}"
            )
            self.model.stop_training = True
            return
        value, step = float(logs[key]), int(self.model.optimizer.iterations.numpy())
        if step <= self.state.get("seen_step", -1):  # seen before the run was killed
            return
        self.state["seen_step"] = step
        os.makedirs(self.directory, exist_ok=True)
        if self.state["best"] is None or self.better(value, self.state["best"]):
            save_weights_atomic(self.student, self.weights_path)
            self.state.update(best=value, best_step=step, waited=0)
        elif self.patience:
            self.state["waited"] += 1
            if self.state["waited"] >= self.patience:
                self.state["stopped_at"] = step
                self.model.stop_training = True
                log.info(
                    "%s: early stop at step %d: val %s %.4f at step %d, no better in %d validations",
                    self.stage,
                    step,
                    self.metric,
                    self.state["best"],
                    self.state["best_step"],
                    self.patience,
                )
        _write_json_atomic(self.state_path, self.state)

    def stopped(self):
        """Whether an earlier run of the stage already stopped early (nothing left to train)."""
        return self.state.get("stopped_at") is not None

    def summary(self):
        """What the stage records: ``{"keep_best" | "early_stop": {metric, best, best_step, ...}}``."""
        if self.patience:
            return {
                "early_stop": {
                    "metric": self.metric,
                    "best": self.state["best"],
                    "best_step": self.state["best_step"],
                    "stopped_at": self.state["stopped_at"],
                }
            }
        return {
            "keep_best": {
                "metric": self.metric,
                "best": self.state["best"],
                "best_step": self.state["best_step"],
                # relative to the stage folder (the stage writes to a temporary one)
                "weights": (
                    os.path.join(os.path.basename(self.directory), self.WEIGHTS)
                    if self.state["best"] is not None
                    else None
                ),
            }
        }

    def restore_best(self):
        """Load the best weights seen (if any validation ran) into the student."""
        if self.state["best"] is not None and os.path.exists(self.weights_path):
            self.student.load_weights(self.weights_path)


class StepProgress(keras.callbacks.Callback):
    """A progress bar over the stage's optimizer steps (not Keras epochs, which are only the
    checkpoint interval), drawn on a terminal only (:func:`tfkd.progress.bars_enabled`):
    the loss terms as the trainer reports them, and tokens/s instead of a token count."""

    def __init__(self, total_steps, batches_per_step=1):
        super().__init__()
        self.total_steps = total_steps
        self.batches_per_step = batches_per_step
        self.bar = None

    def on_train_begin(self, logs=None):
        from tfkd.progress import progress_bar

        self._batches = int(self.model.optimizer.iterations.numpy()) * self.batches_per_step
        if self.bar is not None:  # the stage's second fit (fit_resumed): the same bar goes on
            return
        self.bar = progress_bar(self.total_steps, "step")
        self._start, self._tokens = time.time(), 0.0
        if self.bar is not None and self._batches:
            self.bar.update(self._batches // self.batches_per_step)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_tokens = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.bar is not None and self._epoch_tokens is None:
            self._epoch_tokens = _epoch_tokens(self.model)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is None:
            return
        self._batches += 1
        logs = logs or {}
        # the trainer's metrics are already running means (and "tokens" a running sum per epoch)
        tokens = float(logs.get("tokens", 0.0))
        self._tokens += tokens - self._epoch_tokens
        self._epoch_tokens = tokens
        values = [(k, float(v)) for k, v in logs.items() if k != "tokens"]
        if self._tokens:
            # since the bar started (compilation included); the log lines' tokens/s is over
            # their last train.log_every steps
            values.append(("mean tokens/s", self._tokens / max(time.time() - self._start, 1e-9)))
        self.bar.stateful_metrics.update(name for name, _ in values)
        self.bar.update(min(self._batches // self.batches_per_step, self.total_steps), values=values)


def training_callbacks(total_steps, batches_per_step=1):
    """What every stage's ``fit`` adds for progress (``fit`` itself runs with ``verbose=0``:
    Keras' own bar counts epochs, and writes control codes into files)."""
    return [StepProgress(total_steps, batches_per_step)]
