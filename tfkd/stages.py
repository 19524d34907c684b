"""The generic stages: vocab -> train -> evaluate -> export.

Each asks the run's task (data, student, metric, export) and method (extra columns, trainer)
for what it needs; none of them knows which task or method that is.
"""

import json
import logging
import os
import time

import keras
import numpy as np

from tfkd import registry
from tfkd.context import RunContext
from tfkd.distribute import make_strategy
from tfkd.errors import StageError, first_line
from tfkd.plan import seed_of_stage
from tfkd.precision import INFERENCE_POLICIES, precision_policy
from tfkd.runner import Stage
from tfkd.spec import ADAPTERS_EXPORTER
from tfkd.stopping import interrupts_kept
from tfkd.training.checkpoint import checkpoint_step
from tfkd.training.fit import FitSettings, fit_trainer
from tfkd.training.schedules import InverseSqrtSchedule, TriangularSchedule
from tfkd.xla import resolve_jit_compile

log = logging.getLogger("tfkd")

STUDENT_CONFIG = "student.json"
STUDENT_WEIGHTS = "student.weights.h5"


def _task(spec):
    return registry.lookup("task", spec.task)


# ----------------------------------------------------------------------------- vocab


class VocabStage(Stage):
    def __init__(self, name="vocab"):
        self.name = name

    def config(self, spec):
        return _task(spec).vocab_config(spec)

    def input_files(self, spec):
        return _task(spec).data_files(spec, ["train"])

    def run(self, context, workdir):
        return context.task.build_vocabulary(context, workdir)


# ----------------------------------------------------------------------------- train


def with_seed(spec, seed):
    """``spec`` with ``train.seed`` set to ``seed`` (``None``: unchanged)."""
    if seed is None or seed == spec.train.seed:
        return spec
    return spec.model_copy(update={"train": spec.train.model_copy(update={"seed": seed})})


def save_student(student, workdir):
    with open(os.path.join(workdir, STUDENT_CONFIG), "w") as f:
        json.dump(keras.saving.serialize_keras_object(student), f, indent=1)
    student.save_weights(os.path.join(workdir, STUDENT_WEIGHTS))


def with_dtype_policy(config, policy):
    """A serialized Keras object ``config`` with every dtype policy in it (the model's own, and
    that of a backbone it wraps) replaced by ``policy``: the policy a model was saved under
    (its training precision) does not decide the one it predicts in."""
    if isinstance(config, list):
        return [with_dtype_policy(c, policy) for c in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy":
        return keras.dtype_policies.serialize(keras.dtype_policies.get(policy))
    return {
        k: policy if k == "dtype" and isinstance(v, str) and v in _POLICY_NAMES else with_dtype_policy(v, policy)
        for k, v in config.items()
    }


_POLICY_NAMES = ("float32", "mixed_bfloat16", "mixed_float16", "bfloat16", "float16")


def load_student(context, train_stage="train", weights=None):
    """Rebuild the trained student from a train stage's config and weights (or the weights
    file ``weights``: an average of its checkpoints, say), in the precision of the spec's
    ``decode.precision``."""
    train_dir = context.runner.stage_dir(train_stage)
    registry.lookup("student", context.spec.student.kind)  # Keras rebuilds it by registered name
    policy = INFERENCE_POLICIES[context.spec.decode.precision]
    config_path = os.path.join(train_dir, STUDENT_CONFIG)
    try:
        with open(config_path) as f:
            config = with_dtype_policy(json.load(f), policy)
    except (OSError, ValueError) as e:
        raise _unreadable(config_path, e, train_dir) from None
    path = weights or os.path.join(train_dir, STUDENT_WEIGHTS)
    # Ctrl-C while Keras builds or loads (it catches it) stops the caller (tfkd.load's too):
    # never a build error, never weights that "do not fit"
    with interrupts_kept():
        with precision_policy(policy):
            student = keras.saving.deserialize_keras_object(config)
            student(context.task.student_inputs(context.tokenizers()))
        try:
            student.load_weights(path)
        except ValueError as e:  # Keras lists every layer that did not fit: the first says what
            first = next((line for line in str(e).splitlines() if line.strip()), str(e))
            raise StageError(
                f"{path}: these weights do not fit the student of {train_dir} ({first.strip()}); "
                "they were saved from another student configuration or tfkd version"
            ) from None
        except OSError as e:  # truncated, not HDF5
            raise _unreadable(path, e, train_dir if weights is None else None) from None
    return student


def _unreadable(path, error, stage_dir=None):
    """A file of a finished stage that cannot be read, and the way back: the stage again."""
    again = f"; delete {stage_dir} and run the spec again to train it anew" if stage_dir else ""
    return StageError(f"{path}: cannot be read ({first_line(error)}){again}")


def model_width(student, spec):
    """``d_model`` for the inverse-square-root schedule."""
    width = getattr(student, "hidden_dim", None)
    if not width:
        raise StageError(
            f"train: student {spec.student.kind} has no hidden_dim attribute, which the learning-rate "
            f"schedule (lr * hidden_dim^-0.5 * ...) needs; give the student class one"
        )
    return width


def compile_and_build(trainer, optimizer, train_ds, jit_compile):
    """Compile ``trainer`` with ``optimizer``, XLA-compiled as ``jit_compile`` (the stage's
    ``train.jit_compile``: ``"auto"``, ``True`` or ``False``; :func:`tfkd.xla.resolve_jit_compile`)
    says, and build both on the first training batch (so a checkpoint can be restored into them
    before training)."""
    trainer.compile(optimizer=optimizer, jit_compile=resolve_jit_compile(jit_compile))
    trainer(next(iter(train_ds))[0])
    trainer.optimizer.build(trainer.trainable_variables)


def learning_rate_schedule(train, student, spec):
    """``train.schedule``: inverse square root (scaled by the student's width) or linear
    warm-up and decay to 0 at ``train.steps`` (peak ``train.learning_rate``)."""
    if train.schedule == "linear":
        return TriangularSchedule(train.learning_rate, train.warmup_steps, train.steps)
    return InverseSqrtSchedule(train.learning_rate, model_width(student, spec), train.warmup_steps)


# train settings left out of a train stage's key at their defaults, so runs made before they
# existed keep their keys
NEW_TRAIN_DEFAULTS = {
    "accumulate": 1,
    "early_stop": None,
    "keep_last": 0,
    "average_last": None,
    "keep_best": None,
    "deterministic": False,
    "jit_compile": "auto",
}


# train settings a stopped train stage may change and still resume from its checkpoint
RESUMABLE_TRAIN_KEYS = ("train.learning_rate", "train.clip_norm", "train.steps")


class TrainStage(Stage):
    """Trains the student with a method: the spec's (stage ``train``), the supervised baseline
    (stage ``baseline``: same data, student, steps and seed), or a variant's (the spec's
    ``variants``: the spec with a few distill/student/train settings changed).

    With ``train.init_from: STAGE`` the stage starts from the student weights that another
    train stage saved (a pre-distilled student, say); the baseline never does."""

    runs_on_every_worker = True  # its steps run under train.strategy

    def __init__(self, name, method_name, variant_name=None, seed=None):
        self.name = name
        self.method = registry.lookup("method", method_name)
        self.variant = variant_name
        self.seed = seed  # one of train.seeds after the first (the stage is NAME-sSEED)

    def view(self, spec):
        """The spec as this stage sees it."""
        if self.variant is not None:
            spec = spec.variant(self.variant)
        elif self.method.name != spec.method:
            spec = spec.model_copy(update={"distill": self.method.spec_schema(method=self.method.name)})
        return with_seed(spec, self.seed)

    def _init_from(self, own_spec):
        """The stage whose student this one starts from (``own_spec``: :meth:`view`'s)."""
        return None if seed_of_stage(self.name)[0] == "baseline" else own_spec.train.init_from

    def config(self, spec):
        task = _task(spec)
        own = self.view(spec)
        return {
            "data": task.data_key(spec, ["train", "valid"]) | {"batching": task.batching_key(spec)},
            "student": own.student.model_dump(mode="json"),
            # the default schedule is left out, so keys of runs from before the setting stay
            "train": {
                k: v
                for k, v in own.train.model_dump(mode="json").items()
                if k not in ("log_every", "valid_metric_examples", "seeds", "preemption_grace_s")
                and not (k == "schedule" and v == "inverse_sqrt")
                and not (k in NEW_TRAIN_DEFAULTS and v == NEW_TRAIN_DEFAULTS[k])
            },
            "method": self.method.name,
            "method_config": self.method.train_config(RunContext(own)),
            "imports": spec.imports,
        }

    def input_files(self, spec):
        return _task(spec).data_files(spec, ["train", "valid"])

    def resumable(self, spec):
        # what a user changes to get past a diverged (non-finite) run, or to train longer; a
        # linear schedule's learning rate at every step depends on train.steps
        if self.view(spec).train.schedule == "linear":
            return tuple(k for k in RESUMABLE_TRAIN_KEYS if k != "train.steps")
        return RESUMABLE_TRAIN_KEYS

    def can_continue(self, spec, workdir):
        # a finished stage keeps its last checkpoint (FitSettings.keep_checkpoint): a larger
        # train.steps goes on from it; a smaller one than it reached starts over
        step = checkpoint_step(workdir)
        return step is not None and step <= self.view(spec).train.steps

    def run(self, context, workdir):
        context = context.with_spec(self.view(context.spec))
        spec, task, method = context.spec, context.task, self.method
        train = spec.train
        keras.utils.set_random_seed(train.seed)

        def make_train_ds():  # the pipeline, its extra columns (a teacher cache's stream) included
            columns = method.train_columns(context, self.name)
            return method.map_train_batches(context, method.train_dataset(context, self.name, columns))

        train_ds = make_train_ds()
        valid_ds = task.valid_dataset(context, self.name)
        log.info("%s: %s", self.name, task.describe_data(context, self.name))

        student, trainer = self._built(context, train_ds)
        initialized = self._initialized(context, student)
        trainable = sum(int(np.prod(v.shape)) for v in trainer.trainable_variables)
        frozen = sum(int(np.prod(v.shape)) for v in trainer.non_trainable_weights)
        log.info(
            "%s: %s student %s via %s; %s trainable and %s frozen parameters",
            self.name,
            method.name,
            type(student).__name__,
            type(trainer).__name__,
            f"{trainable:,}",
            f"{frozen:,}",
        )
        summary = fit_trainer(
            trainer,
            train_ds,
            valid_ds,
            workdir,
            self.name,
            FitSettings.of_train(
                train,
                method.student_to_save(context, trainer),
                valid_metric=task.valid_metric(context, student) if valid_ds is not None else None,
                parameter_counts={"trainable": trainable, "frozen": frozen},
                finish=lambda: save_student(method.student_to_save(context, trainer), workdir),
                restore_dir=context.runner.resume_dir(self.name),
                keep_checkpoint=True,
                remake_train_ds=make_train_ds,
            ),
        )
        return {
            "steps": int(trainer.optimizer.iterations.numpy()),
            "method": method.name,
            "loss_weights": dict(trainer.loss_weights),
            "initialised_from": initialized,
            "trainable_parameters": trainable,
            "frozen_parameters": frozen,
            **summary,
        }

    def _built(self, context, train_ds):
        """``(student, trainer)``: built under ``train.strategy`` and ``train.precision``, the
        trainer compiled with its optimizer and built on the first batch of ``train_ds``."""
        spec, train = context.spec, context.spec.train
        strategy = make_strategy(train.strategy)
        if train.accumulate > 1 and strategy.num_replicas_in_sync > 1:
            raise StageError(
                f"{self.name}: train.accumulate: {train.accumulate} needs one device, but strategy "
                f"{train.strategy} has {strategy.num_replicas_in_sync} replicas (their batches already add "
                "up: lower train.accumulate to 1 or set train.strategy: one_device)"
            )
        with strategy.scope(), precision_policy(train.precision):
            student = context.task.build_student(spec, context.tokenizers())
            trainer = self.method.make_trainer(context, student)
            optimizer = keras.optimizers.Adam(
                learning_rate_schedule(train, student, spec),
                beta_1=train.adam_beta_1,
                beta_2=train.adam_beta_2,
                epsilon=train.adam_epsilon,
                global_clipnorm=train.clip_norm,
            )
            compile_and_build(trainer, optimizer, train_ds, jit_compile=train.jit_compile)
        return student, trainer

    def _initialized(self, context, student):
        """Where the student's first weights came from, loaded into it (``train.init_from``'s
        stage, or the method's initialisation), or ``None``: as built."""
        init = self._init_from(context.spec)
        if init:
            student.load_weights(os.path.join(context.runner.stage_dir(init), STUDENT_WEIGHTS))
            initialized = f"stage {init}"
        else:
            initialized = self.method.initialize_student(context, student, self.name)
        if initialized:
            log.info("%s: student initialised from %s", self.name, initialized)
        return initialized


# ----------------------------------------------------------------------------- evaluate


class EvaluateStage(Stage):
    """Predicts the evaluation splits with a trained student and scores them (the task's
    metric); a variant's student is decoded with the variant's ``decode`` settings."""

    def __init__(self, name, train_stage, variant_name=None, seed=None, splits=None):
        self.name = name
        self.train_stage = train_stage
        self.variant = variant_name
        self.seed = seed
        self.splits = splits  # default: evaluate.splits (a sweep's students: its selection split alone)

    def scored_splits(self, spec):
        return self.splits or spec.evaluate.splits

    def view(self, spec):
        return with_seed(spec.variant(self.variant) if self.variant is not None else spec, self.seed)

    def config(self, spec):
        own = self.view(spec)
        return {
            "decode": own.decode.key(),
            "evaluate": spec.evaluate.model_dump(mode="json"),
            "data": _task(spec).data_key(spec, self.scored_splits(spec)),
        }

    def input_files(self, spec):
        return _task(spec).data_files(spec, self.scored_splits(spec))

    def load_model(self, context):
        """The model scored: the student ``train_stage`` trained."""
        return load_student(context, self.train_stage)

    def run(self, context, workdir):
        context = context.with_spec(self.view(context.spec))
        student = self.load_model(context)
        results = {}
        for split in self.scored_splits(context.spec):
            log.info("%s: %s", self.name, split)
            results[split] = context.task.evaluate(context, student, split, workdir)
        with open(os.path.join(workdir, "scores.json"), "w") as f:
            json.dump(results, f, indent=2)
        return results


# ----------------------------------------------------------------------------- export


# export.format as export stage keys of runs from before it was a setting spelt it
_EXPORT_KEYS_BEFORE_FORMAT = {"saved_model": {"adapters_only": False}, ADAPTERS_EXPORTER: {"adapters_only": True}}


# settings added later: at their defaults they are not in the key (the runs made before stay done)
_EXPORT_SETTINGS_KEYED_WHEN_SET = ("max_input_chars", "quantization")


def export_key(export):
    """The ``export`` section as the export stage's key: with a format runs made before
    ``export.format`` could write, the key they got (``adapters_only``), so they stay done; the
    settings added since count when they differ from their defaults."""
    key = export.model_dump(mode="json", exclude={"format"})
    for name in _EXPORT_SETTINGS_KEYED_WHEN_SET:
        if key.get(name) == type(export).model_fields[name].default:
            del key[name]
    return key | _EXPORT_KEYS_BEFORE_FORMAT.get(export.format, {"format": export.format})


class ExportStage(Stage):
    """``<run>/export/<model_name>/<version>``: the student, written by the exporter the spec's
    ``export.format`` names (:mod:`tfkd.exporters`; default ``saved_model``: a folder, a
    SavedModel that takes raw text)."""

    def __init__(self, name, train_stage):
        self.name = name
        self.train_stage = train_stage

    def config(self, spec):
        return {
            "decode": spec.decode.key(),
            "export": export_key(spec.export),
            "data": _task(spec).data_key(spec, []),
        }

    def run(self, context, workdir):
        from tfkd.exporters.base import directory_size

        spec = context.spec
        start = time.time()
        student = load_student(context, self.train_stage)
        exporter = registry.lookup("exporter", spec.export.format)()
        path = exporter.export(
            context, student, os.path.join(workdir, spec.export.model_name or spec.name), spec.export.version
        )
        size = directory_size(path)
        # where it is once the stage is done (its work folder is renamed into place)
        final = os.path.join(os.path.dirname(workdir), self.name, os.path.relpath(path, workdir))
        log.info("export: %s, %s (%.1f MB) in %.1fs", final, exporter.writes, size / 1e6, time.time() - start)
        return {"path": os.path.relpath(path, workdir), "bytes": size}


__all__ = [
    "EvaluateStage",
    "ExportStage",
    "RunContext",
    "TrainStage",
    "VocabStage",
    "compile_and_build",
    "fit_trainer",
    "load_student",
    "precision_policy",
    "save_student",
]
