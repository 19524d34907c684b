"""Keeping the last checkpoints of a train stage and averaging them (fairseq's
``scripts/average_checkpoints.py``, OpenNMT-tf's ``average_checkpoints``).

With ``train.keep_last: N`` a train stage writes the student's weights at every checkpoint
(every ``train.checkpoint_every`` steps) to ``<stage>/checkpoints/step-<S>.weights.h5`` and
keeps the last N; they stay in the finished stage. ``train.average_last: N`` makes the
student the stage saves the element-wise mean of the last N; ``tfkd average RUN`` does the
same afterwards into a separate weights file, which ``tfkd translate``/``export --weights``
read.
"""

import errno
import os
import re
import shutil

import keras
import numpy as np

from tfkd.failpoints import failpoint

CHECKPOINTS_DIR = "checkpoints"
_STEP_FILE = re.compile(r"^step-(\d+)\.weights\.h5$")


def save_weights_atomic(model, path):
    """``model.save_weights(path)`` written beside it first and renamed into place, so ``path``
    is never a half-written file (Keras needs the ``.weights.h5`` suffix on the temporary too).

    A folder without room for the file is an ``OSError`` (``ENOSPC``) before anything is
    written: HDF5 running out of space mid-file prints its error stack and can crash the process."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f"tmp-{os.getpid()}-{name}")
    _check_room(model, folder or ".")
    model.save_weights(tmp)
    failpoint("weights-written")
    os.replace(tmp, path)
    return path


def _check_room(model, folder):
    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        variables += list(optimizer.variables)
    needed = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    needed = int(needed * 1.1) + (1 << 20)  # HDF5's metadata and alignment
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device ({free:,} bytes free, a weights file needs about {needed:,})",
            folder,
        )


def kept_checkpoints(directory):
    """``[(step, path)]`` of the student weights kept in ``directory``, oldest first."""
    if not os.path.isdir(directory):
        return []
    found = [
        (int(m.group(1)), os.path.join(directory, name))
        for name in os.listdir(directory)
        for m in [_STEP_FILE.match(name)]
        if m
    ]
    return sorted(found)


class KeepLastCheckpoints(keras.callbacks.Callback):
    """At every Keras epoch end (a stage checkpoint), write ``model``'s weights (the student,
    not the trainer) to ``directory/step-<S>.weights.h5`` atomically and delete all but the
    last ``keep``."""

    def __init__(self, model, directory, keep):
        super().__init__()
        self.student, self.directory, self.keep = model, directory, keep

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        os.makedirs(self.directory, exist_ok=True)
        save_weights_atomic(self.student, os.path.join(self.directory, f"step-{step:08d}.weights.h5"))
        for _, old in kept_checkpoints(self.directory)[: -self.keep]:
            os.remove(old)


def average_weights(model, paths):
    """Set ``model``'s weights to the element-wise mean of the weight files ``paths`` (each
    saved from a model of the same architecture); returns ``model``."""
    if not paths:
        raise ValueError("no checkpoints to average")
    total = None
    for path in paths:
        model.load_weights(path)
        weights = [np.asarray(w, np.float64) for w in model.get_weights()]
        total = weights if total is None else [t + w for t, w in zip(total, weights)]
    dtypes = [np.asarray(w).dtype for w in model.get_weights()]
    model.set_weights([(t / len(paths)).astype(d) for t, d in zip(total, dtypes)])
    return model
