"""LightPAFF's generative pre-training (GPT-2's causal LM, MASS's masked seq2seq) with the
teacher running on the same batch, and the teacher pre-trained from scratch when no checkpoint
can be read.

- ``teacher_pretrain`` (:class:`TeacherPretrainStage`): a teacher of
  ``distill.teacher_pretrain``'s sizes learns the task's pre-training objective on its text with
  the run's vocabulary. ``teacher.checkpoint`` (a keras-hub GPT-2 preset) replaces it.
- ``pretrain_kd`` / ``pretrain_mle`` (:class:`GenerativePretrainStage`): the student learns the
  objective on ``distill.pretrain.text`` from scratch with ``(1 - lambda) * MLE + lambda *
  KL(teacher || student)`` over every predicted position, the frozen pre-trained teacher
  running on the same batch (``lambda = 0``: ``pretrain_mle``, the paper's "GPT-2 small" /
  "MASS small", no teacher). The stage keeps the backbone (the whole model for MASS);
  fine-tuning loads it into the student
  (:func:`tfkd.methods.two_stage.pretrain.load_pretrained_backbone`).

What an objective supplies (:func:`objective_of`): the teacher's network built from
``distill.teacher_pretrain`` and batches of pre-training text.

- ``causal_lm`` (:class:`CausalLM`, appendix eq. 3): text read as the language-model task
  reads its splits (one stream of lines with an end of line after each, cut into overlapping
  blocks: ``task.text_batches``); the teacher a keras-hub ``GPT2Backbone``.
- ``masked_seq2seq`` (:class:`tfkd.methods.two_stage.mass.MaskedSeq2Seq`, appendix eq. 4): MASS.
"""

import json
import logging
import math
import os

import keras
import numpy as np

from tfkd.methods.two_stage.pretrain import StudentPretrainStage, backbone_of
from tfkd.methods.two_stage.settings import objective, pretrain_settings
from tfkd.methods.two_stage.teacher import BACKBONE_CONFIG, BACKBONE_WEIGHTS
from tfkd.runner import Stage
from tfkd.training.schedules import section_adam

log = logging.getLogger("tfkd")


class CausalLM:
    """GPT-2's pre-training: next-token prediction on blocks of the text."""

    name = "causal_lm"
    unit = "blocks"  # what the batch_size counts
    # settings of distill.pretrain / distill.teacher_pretrain that other objectives read
    unused_settings = ("mask_rate", "segment_rate", "decoder_layers")

    def new_teacher(self, context, settings):
        """The teacher's network, untrained, of ``settings``' (``distill.teacher_pretrain``) sizes."""
        import keras_hub

        return keras_hub.models.GPT2Backbone(
            vocabulary_size=context.tokenizers().text.vocabulary_size(),
            num_layers=settings.num_layers,
            num_heads=settings.num_heads,
            hidden_dim=settings.hidden_dim,
            intermediate_dim=settings.intermediate_dim,
            dropout=settings.dropout,
            max_sequence_length=settings.max_sequence_length,
            name="backbone",
        )

    def batches(self, context, lines, memo_key, training, seed, settings):
        """``(dataset, examples, tokens)``: batches of the task's kind from ``lines``, as
        ``settings`` (``distill.pretrain`` or ``distill.teacher_pretrain``) size them."""
        return context.task.text_batches(
            context,
            lines,
            memo_key,
            training,
            seed=seed,
            batch_size=settings.batch_size,
            block_size=settings.max_length,
        )


def objective_of(task):
    from tfkd.methods.two_stage.mass import MaskedSeq2Seq

    return {CausalLM.name: CausalLM, MaskedSeq2Seq.name: MaskedSeq2Seq}[objective(task)]()


def _text_batches(context, entries, limit, key, memo_key, settings, training, seed):
    """``(dataset, examples, tokens, origin)`` of text sources as the task's objective reads them."""
    from tfkd.methods.two_stage.teacher import read_texts

    lines, origin = context.memo(("two_stage", "text", memo_key), lambda: read_texts(entries, limit, key))
    dataset, examples, tokens = objective_of(context.task).batches(context, lines, memo_key, training, seed, settings)
    return dataset, examples, tokens, origin


def _pretrain(context, workdir, stage_name, model, teacher, weight, settings, text_key, seed, hint):
    """Train ``model`` on the task's pre-training objective on ``settings.text`` (distilling
    ``teacher`` with weight ``weight``); save its backbone into ``workdir``; the stage's results."""
    from tfkd.training.fit import FitSettings, fit_trainer

    objective = objective_of(context.task)

    def text_batches():
        return _text_batches(
            context, settings.text, settings.text_limit, f"{text_key}.text", f"{stage_name}.train", settings, True, seed
        )

    train_ds, examples, tokens, origin = text_batches()
    valid_ds = _valid_text_batches(context, settings, text_key, stage_name)
    trainer = _pretrain_distiller(context, model, teacher, weight, settings, train_ds)
    trainable = sum(int(np.prod(v.shape)) for v in trainer.trainable_variables)
    log.info(
        "%s: %s on %s tokens (%s %s of at most %d) of %s, lambda %g, %d steps of %d %s; %s trainable parameters",
        stage_name,
        objective.name,
        f"{tokens:,}",
        f"{examples:,}",
        objective.unit,
        settings.max_length,
        origin,
        weight,
        settings.steps,
        settings.batch_size,
        objective.unit,
        f"{trainable:,}",
    )
    backbone = backbone_of(model)

    def finish():
        with open(os.path.join(workdir, BACKBONE_CONFIG), "w") as f:
            json.dump(keras.saving.serialize_keras_object(backbone), f)
        backbone.save_weights(os.path.join(workdir, BACKBONE_WEIGHTS))

    fitting = FitSettings(
        settings.steps,
        checkpoint_every=settings.log_every,
        log_every=settings.log_every,
        parameter_counts={"trainable": trainable},
        finish=finish,
        hint=hint,
        remake_train_ds=lambda: text_batches()[0],
    )
    summary = fit_trainer(trainer, train_ds, valid_ds, workdir, stage_name, fitting)
    valid = {}
    if "val_nll" in summary:  # per token of the validation text
        valid["val_token_perplexity"] = round(math.exp(summary["val_nll"]), 3)
    return {
        "steps": int(trainer.optimizer.iterations.numpy()),
        "lambda": weight,
        objective.unit: examples,
        "tokens": tokens,
        "trainable_parameters": trainable,
        "parameters": model.count_params(),
        **summary,
        **valid,
    }


def _valid_text_batches(context, settings, text_key, stage_name):
    """The batches of ``settings.valid_text`` (one pass, unshuffled), or ``None`` without it."""
    if not settings.valid_text:
        return None
    key, where = f"{text_key}.valid_text", f"{stage_name}.valid"
    return _text_batches(context, [settings.valid_text], settings.valid_limit, key, where, settings, False, None)[0]


def _pretrain_distiller(context, model, teacher, weight, settings, train_ds):
    """The pre-training trainer of ``model``: ``(1 - weight) * xe + weight * kd`` from ``teacher``
    (none at weight 0), compiled with the section's triangular schedule and built."""
    from tfkd.methods.two_stage.finetune import FinetuneDistiller
    from tfkd.stages import compile_and_build

    loss_weights = {name: w for name, w in (("xe", 1.0 - weight), ("kd", weight)) if w > 0}
    trainer = FinetuneDistiller(
        model, context.task, label_smoothing=0.0, loss_weights=loss_weights, teacher=teacher if weight > 0 else None
    )
    optimizer = section_adam(settings, clipnorm=1.0)
    compile_and_build(trainer, optimizer, train_ds, jit_compile=context.spec.train.jit_compile)
    return trainer


def _text_config(settings, spec):
    from tfkd import registry
    from tfkd.methods.two_stage.teacher import text_key

    unused = set(objective_of(registry.lookup("task", spec.task)).unused_settings)
    dump = settings.model_dump(mode="json", by_alias=True, exclude={"enabled", "text", "valid_text", *unused})
    dump.update(
        text=text_key(settings.text, settings.text_limit),
        valid_text=text_key([settings.valid_text], settings.valid_limit),
    )
    return dump


def _text_files(settings):
    from tfkd.methods.two_stage.teacher import text_files

    return text_files(settings.text) + text_files([settings.valid_text])


class TeacherPretrainStage(Stage):
    """``teacher_pretrain``: a teacher learned from scratch (no checkpoint to start from)."""

    name = "teacher_pretrain"
    runs_in_train_precision = True

    def config(self, spec):
        return {"teacher_pretrain": _text_config(spec.distill.teacher_pretrain, spec), "imports": spec.imports}

    def input_files(self, spec):
        return _text_files(spec.distill.teacher_pretrain)

    def run(self, context, workdir):
        settings = context.spec.distill.teacher_pretrain
        keras.utils.set_random_seed(settings.seed)
        backbone = objective_of(context.task).new_teacher(context, settings)
        teacher = context.task.build_teacher(context.spec, context.tokenizers(), backbone)
        return _pretrain(
            context,
            workdir,
            self.name,
            teacher,
            None,
            0.0,
            settings,
            "distill.teacher_pretrain",
            settings.seed,
            "Lower distill.teacher_pretrain.learning_rate.",
        )


def load_pretrained_teacher(context):
    """The pre-trained (not fine-tuned) teacher, frozen: pre-training distillation's."""
    from tfkd.methods.two_stage.teacher import build_teacher

    teacher = build_teacher(context)
    teacher.trainable = False
    return teacher


class GenerativePretrainStage(StudentPretrainStage):
    """``pretrain_kd`` (the run's lambda, the pre-trained teacher online) or ``pretrain_mle``."""

    def config(self, spec):
        settings = _text_config(pretrain_settings(spec), spec)
        settings.update({"lambda": self.kd_lambda(spec)})
        teacher = None
        if self.distils:
            teacher = spec.teacher.checkpoint if spec.teacher is not None else "teacher_pretrain"
        return {
            "pretrain": settings,
            "student": spec.student.model_dump(mode="json"),
            "seed": spec.train.seed,
            "teacher": teacher,
            "imports": spec.imports,
        }

    def input_files(self, spec):
        return _text_files(pretrain_settings(spec))

    def run(self, context, workdir):
        spec = context.spec
        settings = pretrain_settings(spec)
        keras.utils.set_random_seed(spec.train.seed)
        student = context.task.build_student(spec, context.tokenizers())
        teacher = load_pretrained_teacher(context) if self.distils else None
        return _pretrain(
            context,
            workdir,
            self.name,
            student,
            teacher,
            self.kd_lambda(spec),
            settings,
            "distill.pretrain",
            spec.train.seed,
            "Lower distill.pretrain.learning_rate.",
        )


__all__ = ["CausalLM", "GenerativePretrainStage", "TeacherPretrainStage", "load_pretrained_teacher", "objective_of"]
