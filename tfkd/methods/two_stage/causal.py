"""LightPAFF for GPT-2: causal-LM pre-training with distillation (appendix eq. 3), and the
teacher pre-trained from scratch when no checkpoint can be read.

- ``teacher_pretrain`` (:class:`TeacherPretrainStage`): a ``GPT2Backbone`` of
  ``distill.teacher_pretrain``'s sizes learns next-token prediction on its text (the CPU spec:
  PTB train + WikiText-2 train) with the run's vocabulary. ``teacher.checkpoint`` (a keras-hub
  GPT-2 preset) replaces it.
- ``pretrain_kd`` / ``pretrain_mle`` (:class:`CausalPretrainStage`): the student learns
  next-token prediction on ``distill.pretrain.text`` from scratch with ``(1 - lambda) * MLE +
  lambda * KL(teacher || student)`` over every position, the frozen pre-trained teacher running
  on the same blocks (``lambda = 0``: ``pretrain_mle``, the paper's "GPT-2 small", no teacher).
  The stage keeps the backbone; fine-tuning loads it into the student
  (:func:`tfkd.methods.two_stage.pretrain.load_pretrained_backbone`).

Text is read as the language-model task reads its splits (one stream of lines with an end of
line after each, cut into overlapping blocks: ``task.text_batches``).
"""

import json
import logging
import math
import os

import keras
import numpy as np

from tfkd.methods.two_stage.teacher import BACKBONE_CONFIG, BACKBONE_WEIGHTS
from tfkd.runner import Stage
from tfkd.training.schedules import TriangularSchedule

log = logging.getLogger("tfkd")


def _text_batches(context, entries, limit, key, memo_key, batch_size, block_size, training, seed):
    """``(dataset, blocks, tokens, origin)`` of text sources read as the task reads text."""
    from tfkd.methods.two_stage.teacher import read_texts

    lines, origin = context.memo(("two_stage", "text", memo_key), lambda: read_texts(entries, limit, key))
    dataset, blocks, tokens = context.task.text_batches(context, lines, memo_key, training, seed=seed,
                                                        batch_size=batch_size, block_size=block_size)
    return dataset, blocks, tokens, origin


def _train_causal_lm(context, workdir, stage_name, model, teacher, weight, settings, text_key, seed, hint):
    """Train ``model`` by next-token prediction on ``settings.text`` (distilling ``teacher``
    with weight ``weight``); save its backbone into ``workdir``; the stage's results."""
    from tfkd.methods.two_stage.finetune import FinetuneDistiller
    from tfkd.stages import compile_and_build, fit_trainer

    train_ds, blocks, tokens, origin = _text_batches(
        context, settings.text, settings.text_limit, f"{text_key}.text", f"{stage_name}.train", settings.batch_size,
        settings.max_length, True, seed)
    valid_ds = None
    if settings.valid_text:
        valid_ds, *_ = _text_batches(context, [settings.valid_text], settings.valid_limit, f"{text_key}.valid_text",
                                     f"{stage_name}.valid", settings.batch_size, settings.max_length, False, None)
    loss_weights = {name: w for name, w in (("xe", 1.0 - weight), ("kd", weight)) if w > 0}
    trainer = FinetuneDistiller(model, context.task, label_smoothing=0.0, loss_weights=loss_weights,
                                teacher=teacher if weight > 0 else None)
    compile_and_build(trainer, keras.optimizers.Adam(
        TriangularSchedule(settings.learning_rate, settings.warmup_steps, settings.steps), global_clipnorm=1.0),
        train_ds)
    trainable = sum(int(np.prod(v.shape)) for v in trainer.trainable_variables)
    log.info("%s: causal LM on %s tokens (%s blocks of %d) of %s, lambda %g, %d steps of %d blocks; %s trainable "
             "parameters", stage_name, f"{tokens:,}", f"{blocks:,}", settings.max_length, origin, weight,
             settings.steps, settings.batch_size, f"{trainable:,}")
    backbone = model.backbone

    def finish():
        with open(os.path.join(workdir, BACKBONE_CONFIG), "w") as f:
            json.dump(keras.saving.serialize_keras_object(backbone), f)
        backbone.save_weights(os.path.join(workdir, BACKBONE_WEIGHTS))

    summary = fit_trainer(trainer, train_ds, valid_ds, workdir, stage_name, settings.steps, settings.log_every,
                          settings.log_every, parameter_counts={"trainable": trainable}, finish=finish, hint=hint)
    valid = {}
    if "val_nll" in summary:  # per token of the validation text
        valid["val_token_perplexity"] = round(math.exp(summary["val_nll"]), 3)
    return {"steps": int(trainer.optimizer.iterations.numpy()), "lambda": weight, "blocks": blocks, "tokens": tokens,
            "trainable_parameters": trainable, "parameters": model.count_params(), **summary, **valid}


def _text_config(settings):
    from tfkd.methods.two_stage.teacher import text_key

    dump = settings.model_dump(mode="json", by_alias=True, exclude={"enabled", "text", "valid_text"})
    dump.update(text=text_key(settings.text, settings.text_limit),
                valid_text=text_key([settings.valid_text], settings.valid_limit))
    return dump


def _text_files(settings):
    from tfkd.methods.two_stage.teacher import text_files

    return text_files(settings.text) + text_files([settings.valid_text])


class TeacherPretrainStage(Stage):
    """``teacher_pretrain``: a GPT-2 teacher learned from scratch (no checkpoint to start from)."""

    name = "teacher_pretrain"
    depends = ("vocab",)

    def config(self, spec):
        return {"teacher_pretrain": _text_config(spec.distill.teacher_pretrain), "imports": spec.imports}

    def input_files(self, spec):
        return _text_files(spec.distill.teacher_pretrain)

    def run(self, context, workdir):
        import keras_hub

        settings = context.spec.distill.teacher_pretrain
        keras.utils.set_random_seed(settings.seed)
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=context.tokenizers().text.vocabulary_size(), num_layers=settings.num_layers,
            num_heads=settings.num_heads, hidden_dim=settings.hidden_dim, intermediate_dim=settings.intermediate_dim,
            dropout=settings.dropout, max_sequence_length=settings.max_sequence_length, name="backbone")
        teacher = context.task.build_teacher(context.spec, context.tokenizers(), backbone)
        return _train_causal_lm(context, workdir, self.name, teacher, None, 0.0, settings,
                                "distill.teacher_pretrain", settings.seed,
                                "Lower distill.teacher_pretrain.learning_rate.")


def load_pretrained_teacher(context):
    """The pre-trained (not fine-tuned) teacher, frozen: pre-training distillation's."""
    from tfkd.methods.two_stage.teacher import build_teacher

    teacher = build_teacher(context)
    teacher.trainable = False
    return teacher


class CausalPretrainStage(Stage):
    """``pretrain_kd`` (the run's lambda, the pre-trained teacher online) or ``pretrain_mle``."""

    def __init__(self, name):
        from tfkd.methods.two_stage import PRETRAIN_KD

        self.name = name
        self.distils = name == PRETRAIN_KD

    def kd_lambda(self, spec):
        from tfkd.methods.two_stage import kd_pretrain_lambda

        return kd_pretrain_lambda(spec) if self.distils else 0.0

    def dependencies(self, spec):
        teacher = ("teacher_pretrain",) if self.distils and spec.distill.teacher_pretrain is not None else ()
        return ("vocab", *teacher)

    def config(self, spec):
        from tfkd.methods.two_stage import pretrain_settings

        settings = _text_config(pretrain_settings(spec))
        settings.update({"lambda": self.kd_lambda(spec)})
        for key in ("mask_rate",):  # masked LM's only
            settings.pop(key, None)
        teacher = None
        if self.distils:
            teacher = spec.teacher.checkpoint if spec.teacher is not None else "teacher_pretrain"
        return {"pretrain": settings, "student": spec.student.model_dump(mode="json"), "seed": spec.train.seed,
                "teacher": teacher, "imports": spec.imports}

    def input_files(self, spec):
        from tfkd.methods.two_stage import pretrain_settings

        return _text_files(pretrain_settings(spec))

    def run(self, context, workdir):
        from tfkd.methods.two_stage import pretrain_settings

        spec = context.spec
        settings = pretrain_settings(spec)
        keras.utils.set_random_seed(spec.train.seed)
        student = context.task.build_student(spec, context.tokenizers())
        teacher = load_pretrained_teacher(context) if self.distils else None
        return _train_causal_lm(context, workdir, self.name, student, teacher, self.kd_lambda(spec), settings,
                                "distill.pretrain", spec.train.seed, "Lower distill.pretrain.learning_rate.")


__all__ = ["CausalPretrainStage", "TeacherPretrainStage", "load_pretrained_teacher"]
