"""Training a masked language model (a teacher's MLM head, a C-MLM fine-tuning) as a stage.

Methods build the model and the ``(inputs, labels, weights)`` batches; :func:`fit_masked_lm`
does the rest the same way for all of them: Adam with a triangular schedule, checkpoints every
``log_every`` steps (a killed stage resumes), TensorBoard, validation accuracy, the weights
saved as ``teacher.weights.h5`` in the stage's directory.
"""

import logging
import math
import os
import time

import keras

from tfkd.errors import StageError
from tfkd.training.callbacks import TrainingMonitor, training_callbacks
from tfkd.training.checkpoint import StageCheckpoint
from tfkd.training.fit import fit_resumed
from tfkd.training.schedules import section_adam
from tfkd.xla import resolve_jit_compile

log = logging.getLogger("tfkd")

TEACHER_WEIGHTS = "teacher.weights.h5"
# the second half of a validation masking's seed (the first is the stage's seed): a stream of
# its own, so the fixed validation masks never coincide with a training batch's
VALIDATION_MASKING_STREAM = 7


def fit_masked_lm(
    model, train_ds, valid_ds, settings, workdir, stage_name, description, hint, *, jit_compile, remake_train_ds=None
):
    """Train ``model`` (``inputs -> logits`` at ``inputs["mask_positions"]``) on ``train_ds``.

    Args:
        model: a Keras model; its trainable variables train.
        train_ds: repeated ``(inputs, labels, weights)`` batches.
        valid_ds: one pass of validation batches (or ``None``).
        settings: has ``steps``, ``learning_rate``, ``warmup_steps`` and ``log_every``.
        workdir: the stage's directory.
        stage_name: for logs and messages.
        description: what is trained, for the log (``"C-MLM on 9,984 pairs"``).
        hint: what to change when the loss turns NaN.
        jit_compile: the run's ``train.jit_compile`` (``"auto"``, ``True`` or ``False``): whether
            the steps are XLA-compiled (:func:`tfkd.xla.resolve_jit_compile`).

    Returns:
        ``{"steps", "trainable_parameters", "accuracy", "loss", "val_accuracy", "val_loss"}``.
    """
    optimizer = section_adam(settings)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=resolve_jit_compile(jit_compile),
    )
    inputs, _, _ = next(iter(train_ds))
    model(inputs)
    optimizer.build(model.trainable_variables)
    checkpoint = StageCheckpoint(workdir, stage_name, total_steps=settings.steps, hint=hint)
    checkpoint.restore(model)
    done = int(optimizer.iterations.numpy())
    if done:
        log.info("%s: resumed from checkpoint at step %d", stage_name, done)
    trainable = sum(int(math.prod(v.shape)) for v in model.trainable_variables)
    log.info(
        "%s: %s, %d steps; %s parameters, %s of them trained",
        stage_name,
        description,
        settings.steps,
        f"{model.count_params():,}",
        f"{trainable:,}",
    )
    start = time.time()
    history = fit_resumed(
        model,
        train_ds,
        settings.steps,
        settings.log_every,
        remake_train_ds=remake_train_ds,
        validation_data=valid_ds,
        callbacks=[
            TrainingMonitor(os.path.join(workdir, "tensorboard"), settings.log_every, total_steps=settings.steps),
            checkpoint,
            *training_callbacks(settings.steps),
        ],
    )
    if checkpoint.failure:
        raise StageError(checkpoint.failure)
    model.save_weights(os.path.join(workdir, TEACHER_WEIGHTS))
    checkpoint.cleanup()
    last = {k: round(float(v[-1]), 4) for k, v in history.history.items()} if history and history.history else {}
    log.info(
        "%s: valid MLM accuracy %.3f after %.0fs",
        stage_name,
        last.get("val_accuracy", float("nan")),
        time.time() - start,
    )
    return {"steps": int(optimizer.iterations.numpy()), "trainable_parameters": trainable, **last}
