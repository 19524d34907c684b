"""LightPAFF's teacher stages.

- ``teacher_finetune``: the teacher checkpoint's backbone with the task's head
  (:meth:`tfkd.tasks.Task.build_teacher`), fine-tuned on the task's training split with the
  task's loss (linear warm-up and decay, ``distill.teacher_finetune``); its score on the
  validation split is reported (the teacher row of the run's comparison, and what a search
  of the teacher's settings reads).
- ``teacher_evaluate``: the fine-tuned teacher scored on the other splits of
  ``evaluate.splits`` (the test set), as the students' ``*_evaluate`` stages score them and
  keyed as they are, so a teacher chosen in a run scored on valid only is reused, not trained
  again, by the run that reads test.
- ``teacher_predictions``: the fine-tuned teacher's output distribution for every training
  example, and for the extra unlabeled sentences of ``distill.finetune.unlabeled`` (ids after
  the split's), written once to ``teacher_predictions.npz``; fine-tuning distillation reads it
  as the batch column ``teacher_probs``. The teacher is frozen and runs without dropout, so
  this is what it would say online, at a fraction of the cost.
- ``teacher_mlm`` (when pre-training distils): the shared stage
  (:mod:`tfkd.teachers.mlm_head`) training the checkpoint's masked-LM head on the
  pre-training text.
"""

import logging
import os

import keras
import numpy as np
import tensorflow as tf

from tfkd import data as data_lib
from tfkd import registry
from tfkd.errors import StageError
from tfkd.methods.two_stage.settings import pretrain_settings, teacher_label, teacher_test_splits
from tfkd.runner import Stage
from tfkd.stages import EvaluateStage
from tfkd.teachers.mlm_head import TeacherMLMStage

log = logging.getLogger("tfkd")

TEACHER_WEIGHTS = "teacher.weights.h5"
# what teacher_pretrain keeps (generative.py writes them)
BACKBONE_WEIGHTS = "backbone.weights.h5"
BACKBONE_CONFIG = "backbone.json"
PREDICTIONS = "teacher_predictions.npz"


def _task(spec):
    return registry.lookup("task", spec.task)


def text_files(entries):
    return [e for e in entries if e and not e.startswith("tfds:")]


def text_key(entries, limit):
    # local files are keyed by their content; TFDS corpora by name
    return {
        "tfds": [e for e in entries if e and e.startswith("tfds:")],
        "files": len(text_files(entries)),
        "limit": limit,
    }


def read_texts(entries, limit, key):
    """The non-empty lines of the text sources ``entries``, concatenated: ``(lines, origin)``."""
    lines, origins = [], []
    for entry in entries:
        more, origin = data_lib.read_text_source(entry, limit, key)
        lines += more
        origins.append(origin)
    return lines, " + ".join(origins)


def _seeded(context, seed):
    """The context as a stage seeded with ``seed`` sees it (the task's shuffling reads
    ``train.seed``)."""
    spec = context.spec
    return context.with_spec(spec.model_copy(update={"train": spec.train.model_copy(update={"seed": seed})}))


def pretrained_backbone(context):
    """The teacher's pretrained backbone: ``teacher.checkpoint``'s, or the one the
    ``teacher_pretrain`` stage trained."""
    spec = context.spec
    if spec.distill.teacher_pretrain is not None:
        return load_teacher_pretrain_backbone(context)
    from tfkd.teachers.checkpoints import load_backbone

    return load_backbone(spec.teacher.checkpoint, kind=spec.teacher.kind)


def load_teacher_pretrain_backbone(context):
    """The backbone the ``teacher_pretrain`` stage trained (a ``GPT2Backbone``, a
    ``TransformerSeq2Seq``)."""
    import importlib
    import json

    directory = context.runner.stage_dir("teacher_pretrain")
    with open(os.path.join(directory, BACKBONE_CONFIG)) as f:
        config = json.load(f)
    # tfkd's models register with Keras when their module is imported, which a command that
    # skips teacher_pretrain (done before) has not done yet
    if str(config.get("module", "")).startswith("tfkd."):
        importlib.import_module(config["module"])
    backbone = keras.saving.deserialize_keras_object(config)
    if not backbone.built:  # a subclassed model (a seq2seq teacher) builds on its first call
        backbone(context.task.student_inputs(context.tokenizers()))
    backbone.load_weights(os.path.join(directory, BACKBONE_WEIGHTS))
    return backbone


def build_teacher(context):
    return context.task.build_teacher(context.spec, context.tokenizers(), pretrained_backbone(context))


def load_finetuned_teacher(context):
    """The ``teacher_finetune`` stage's teacher, frozen."""
    teacher = build_teacher(context)
    teacher(context.task.student_inputs(context.tokenizers()))
    teacher.load_weights(os.path.join(context.runner.stage_dir("teacher_finetune"), TEACHER_WEIGHTS))
    teacher.trainable = False
    return teacher


class TeacherTaskFinetuneStage(Stage):
    name = "teacher_finetune"
    runs_in_train_precision = True

    def config(self, spec):
        task = _task(spec)
        return {
            "checkpoint": spec.teacher.checkpoint if spec.teacher is not None else None,
            "teacher_finetune": spec.distill.teacher_finetune.model_dump(mode="json"),
            "data": task.data_key(spec, ["train", "valid"]) | {"batching": task.batching_key(spec)},
            "imports": spec.imports,
        }

    def input_files(self, spec):
        return _task(spec).data_files(spec, ["train", "valid"])

    def run(self, context, workdir):
        from tfkd.stages import compile_and_build
        from tfkd.training.fit import FitSettings, fit_trainer
        from tfkd.training.schedules import section_adam
        from tfkd.training.trainer import SupervisedTrainer

        settings = context.spec.distill.teacher_finetune
        keras.utils.set_random_seed(settings.seed)
        view = _seeded(context, settings.seed)
        train_ds = view.task.train_dataset(view, self.name)
        valid_ds = view.task.valid_dataset(view, self.name)
        teacher = build_teacher(view)
        trainer = SupervisedTrainer(
            teacher, view.task, label_smoothing=settings.label_smoothing, reported_terms=("nll",)
        )
        compile_and_build(trainer, section_adam(settings), train_ds, jit_compile=view.spec.train.jit_compile)
        parameters = teacher.count_params()
        log.info(
            "%s: fine-tuning %s (%s parameters) for %d steps",
            self.name,
            teacher_label(context.spec),
            f"{parameters:,}",
            settings.steps,
        )
        summary = fit_trainer(
            trainer,
            train_ds,
            valid_ds,
            workdir,
            self.name,
            FitSettings(
                settings.steps,
                checkpoint_every=settings.log_every,
                log_every=settings.log_every,
                valid_metric=view.task.valid_metric(view, teacher) if valid_ds is not None else None,
                parameter_counts={"trainable": parameters},
                finish=lambda: teacher.save_weights(os.path.join(workdir, TEACHER_WEIGHTS)),
                hint="Lower distill.teacher_finetune.learning_rate.",
                remake_train_ds=lambda: view.task.train_dataset(view, self.name),
            ),
        )
        results = {"steps": int(trainer.optimizer.iterations.numpy()), "parameters": parameters, **summary}
        if valid_ds is not None:
            # the validation split only: teacher_evaluate scores the others, under its own key
            teacher.trainable = False
            results["valid"] = view.task.evaluate(view, teacher, "valid", workdir)
        return results


class TeacherEvaluateStage(EvaluateStage):
    """The fine-tuned teacher scored as the students' evaluate stages score them (and keyed as
    they are), on ``evaluate.splits`` but the validation split, which ``teacher_finetune``
    scores."""

    def __init__(self):
        super().__init__("teacher_evaluate", "teacher_finetune")

    def scored_splits(self, spec):
        return teacher_test_splits(spec)

    def load_model(self, context):
        return load_finetuned_teacher(context)


UNUSED_TRAIN = "unused_train"  # distill.finetune.unlabeled: the training split's texts the run leaves out


def unlabeled_sentences(context, spec):
    """The extra sentences of ``distill.finetune.unlabeled`` (read once per run): a text
    source's non-empty lines, or with ``unused_train`` the task's training texts past
    ``data.train_limit``; at most ``unlabeled_limit`` of them."""
    finetune = spec.distill.finetune

    def read():
        if finetune.unlabeled == UNUSED_TRAIN:
            texts = [t for t in context.task.unused_texts(context, "train") if t.strip()]
            return texts[: finetune.unlabeled_limit] if finetune.unlabeled_limit else texts
        return read_texts([finetune.unlabeled], finetune.unlabeled_limit, "distill.finetune.unlabeled")[0]

    return context.memo(("two_stage", "unlabeled"), read)


def _unlabeled_sources(finetune):
    """``distill.finetune.unlabeled`` as text sources (none for ``unused_train``, which the
    training data's key and files already cover)."""
    return [] if finetune.unlabeled == UNUSED_TRAIN else [finetune.unlabeled]


class TeacherPredictionsStage(Stage):
    name = "teacher_predictions"
    runs_in_train_precision = True

    def config(self, spec):
        finetune = spec.distill.finetune
        unlabeled = text_key(_unlabeled_sources(finetune), finetune.unlabeled_limit)
        if finetune.unlabeled == UNUSED_TRAIN:
            unlabeled["unused_train"] = True
        return {"data": _task(spec).data_key(spec, ["train"]), "unlabeled": unlabeled}

    def input_files(self, spec):
        return _task(spec).data_files(spec, ["train"]) + text_files(_unlabeled_sources(spec.distill.finetune))

    def run(self, context, workdir):
        task = context.task
        ids = np.asarray(task.example_ids(context, "train", self.name), np.int64)
        texts = task.corpus(context, "train").texts
        sentences = [texts[i] for i in ids]
        extra = unlabeled_sentences(context, context.spec) if context.spec.distill.finetune.unlabeled else []
        first_extra = len(texts)
        teacher = load_finetuned_teacher(context)
        log.info(
            "%s: the teacher's outputs for %d training examples and %d unlabeled sentences",
            self.name,
            len(sentences),
            len(extra),
        )
        probs = task.predict_probabilities(context, teacher, sentences + extra)
        all_ids = np.concatenate([ids, first_extra + np.arange(len(extra), dtype=np.int64)])
        tmp = os.path.join(workdir, "tmp-" + PREDICTIONS)
        np.savez(tmp, ids=all_ids, probs=probs.astype(np.float32))
        os.replace(tmp, os.path.join(workdir, PREDICTIONS))
        agreement = None
        labels = np.asarray(task.corpus(context, "train").labels)[ids]
        if len(ids):
            agreement = round(float(np.mean(np.argmax(probs[: len(ids)], -1) == labels)) * 100, 2)
        return {"examples": int(len(ids)), "unlabeled": len(extra), "train_accuracy": agreement}


def teacher_prediction_columns(context, spec):
    """The ``teacher_predictions`` stage's outputs as training columns ``{"id",
    "teacher_probs"}``, reshuffled every pass (seeded by ``train.seed``)."""
    path = os.path.join(context.runner.stage_dir("teacher_predictions"), PREDICTIONS)
    if not os.path.exists(path):
        raise StageError(f"{path} is missing: run stage teacher_predictions")
    with np.load(path) as saved:
        ids, probs = saved["ids"], saved["probs"]
    columns = tf.data.Dataset.from_tensor_slices({"id": ids, "teacher_probs": probs})
    return columns.shuffle(len(ids), seed=spec.train.seed, reshuffle_each_iteration=True)


class PretrainTeacherMLMStage(TeacherMLMStage):
    """The teacher's MLM head, trained on the pre-training text as the student is masked."""

    text_description = "pieces of pre-training text"

    def masking(self, spec):
        return "token", pretrain_settings(spec).mask_rate

    def text_key(self, spec):
        settings = pretrain_settings(spec)
        return {
            "train": text_key(settings.text, settings.text_limit),
            "valid": text_key([settings.valid_text], settings.valid_limit),
        }

    def input_files(self, spec):
        settings = pretrain_settings(spec)
        return text_files(settings.text) + text_files([settings.valid_text])

    def sentences(self, context, split):
        settings = pretrain_settings(context.spec)
        if split == "train":
            return read_texts(settings.text, settings.text_limit, "distill.pretrain.text")
        if settings.valid_text is None:
            return [], "no validation text"
        return read_texts([settings.valid_text], settings.valid_limit, "distill.pretrain.valid_text")
