"""LightPAFF's pre-training distillation for BERT (appendix eq. 2).

The student's encoder (``student.backbone``, a keras-hub ``BertBackbone`` with the teacher's
vocabulary) and keras-hub's ``MaskedLMHead`` tied to its token embedding learn masked LM from
scratch on the pre-training text: lines longer than ``max_length`` are cut into pieces, each
framed ``[CLS] x [SEP]``, 15% of the tokens masked 80/10/10 with a new seed per batch
(:func:`tfkd.training.teacher_mlm.mlm_batches`). Over the masked positions the loss is
``(1 - lambda) * CE(x_m) + lambda * KL(q(.|x\\M) || p(.|x\\M))`` with ``q`` the frozen
teacher's masked-LM distribution on the same masked batch. ``lambda = 0`` (stage
``pretrain_mle``) is plain MLM pre-training, with no teacher. The stage keeps the backbone's
weights; fine-tuning loads them (:func:`load_pretrained_backbone`).
"""

import logging
import os

import keras
import keras_hub
import tensorflow as tf
from keras import ops

from tfkd import data as data_lib
from tfkd import registry
from tfkd.runner import Stage, StageError
from tfkd.training.losses import kl_divergence
from tfkd.training.schedules import TriangularSchedule
from tfkd.training.teacher_mlm import load_trained_teacher, mlm_batches
from tfkd.training.trainer import LossTerm, Trainer

log = logging.getLogger("tfkd")

BACKBONE_WEIGHTS = "backbone.weights.h5"


class PretrainDistiller(Trainer):
    """Masked LM with ``{mle: 1 - lambda, kd: lambda}`` over the masked positions.

    Args:
        masked_lm: the student's ``BertMaskedLM`` (inputs with ``mask_positions`` -> logits).
        teacher: the frozen teacher ``BertMaskedLM`` (same vocabulary), or ``None`` (MLE only).
        loss_weights: ``{"mle": 1 - lambda, "kd": lambda}`` (terms with weight 0 left out).
    """

    def __init__(self, masked_lm, teacher, loss_weights, **kwargs):
        super().__init__(masked_lm, loss_weights, reported_terms=("mle", *(("kd",) if teacher is not None else ())),
                         **kwargs)
        self.teacher = teacher

    def compute_terms(self, data, training):
        inputs, labels, weights = data
        logits = self.student(inputs, training=training)
        weights = ops.cast(weights, "float32")
        count = ops.sum(weights)
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, ops.expand_dims(ops.cast(labels, "int32"), -1), axis=-1), -1)
        terms = {"mle": LossTerm(ops.sum(nll * weights), count)}
        if self.teacher is not None:
            teacher_probs = ops.softmax(ops.cast(self.teacher(inputs, training=False), "float32"), axis=-1)
            terms["kd"] = LossTerm(ops.sum(kl_divergence(ops.stop_gradient(teacher_probs), logits) * weights), count)
        return terms, ops.sum(ops.cast(inputs["padding_mask"], "float32"))


def perplexity(mean_nll):
    """``exp(mean NLL)`` of the masked tokens (``None`` when there is none)."""
    import math

    return None if mean_nll is None or math.isnan(mean_nll) else round(math.exp(mean_nll), 3)


def _settings(spec):
    from tfkd.methods.two_stage import pretrain_settings

    return pretrain_settings(spec)


def input_tokenizer(tokenizers):
    """The student's input vocabulary: the task's first tokenizer (a classifier's text)."""
    return tokenizers[0]


class PretrainStage(Stage):
    """``pretrain_kd`` (the run's lambda) or ``pretrain_mle`` (lambda 0, no teacher)."""

    def __init__(self, name):
        from tfkd.methods.two_stage import PRETRAIN_KD

        self.name = name
        self.distils = name == PRETRAIN_KD

    def kd_lambda(self, spec):
        from tfkd.methods.two_stage import kd_pretrain_lambda

        return kd_pretrain_lambda(spec) if self.distils else 0.0

    def dependencies(self, spec):
        return ("vocab", *(("teacher_mlm",) if self.distils else ()))

    def config(self, spec):
        from tfkd.methods.two_stage.teacher import _text_key

        settings = _settings(spec)
        dump = settings.model_dump(mode="json", by_alias=True, exclude={"enabled", "text", "valid_text"})
        dump.update({"lambda": self.kd_lambda(spec), "text": _text_key(settings.text, settings.text_limit),
                     "valid_text": _text_key([settings.valid_text], settings.valid_limit)})
        return {"pretrain": dump, "student": spec.student.model_dump(mode="json"), "seed": spec.train.seed,
                "teacher": spec.teacher.checkpoint if self.distils else None, "imports": spec.imports}

    def input_files(self, spec):
        from tfkd.methods.two_stage.teacher import _text_files

        settings = _settings(spec)
        return _text_files(settings.text) + _text_files([settings.valid_text])

    def run(self, context, workdir):
        from tfkd.methods.two_stage.teacher import read_texts
        from tfkd.stages import fit_trainer

        spec = context.spec
        settings = _settings(spec)
        weight = self.kd_lambda(spec)
        keras.utils.set_random_seed(spec.train.seed)
        tokenizers = context.tokenizers()
        tokenizer = input_tokenizer(tokenizers)

        def chunks(entries, limit, key):
            lines, origin = read_texts(entries, limit, key)
            ids = data_lib.tokenize_to_ragged(tokenizer, lines)
            ids = tf.ragged.boolean_mask(ids, ids.row_lengths() > 0)
            return data_lib.chunk_rows(ids, settings.max_length - 2), origin

        train_ids, origin = chunks(settings.text, settings.text_limit, "distill.pretrain.text")
        if int(train_ids.nrows()) == 0:
            raise StageError(f"{self.name}: no text in {origin}")
        train_ds = mlm_batches(train_ids, tokenizer, settings, "token", settings.mask_rate, spec.train.seed,
                               training=True)
        valid_ds = None
        if settings.valid_text:
            valid_ids, _ = chunks([settings.valid_text], settings.valid_limit, "distill.pretrain.valid_text")
            if int(valid_ids.nrows()):
                valid_ds = mlm_batches(valid_ids, tokenizer, settings, "token", settings.mask_rate, spec.train.seed,
                                       training=False)
        student = context.task.build_student(spec, tokenizers)
        backbone = getattr(student, "backbone", None)
        if not isinstance(backbone, keras_hub.models.BertBackbone):
            raise StageError(f"{self.name}: MLM pre-training needs a student whose backbone attribute is a keras-hub "
                             f"BertBackbone; student {spec.student.kind} ({type(student).__name__}) has none")
        masked_lm = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
        teacher = load_trained_teacher(context) if self.distils else None
        loss_weights = {name: w for name, w in (("mle", 1.0 - weight), ("kd", weight)) if w > 0}
        trainer = PretrainDistiller(masked_lm, teacher, loss_weights)
        trainer.compile(optimizer=keras.optimizers.Adam(
            TriangularSchedule(settings.learning_rate, settings.warmup_steps, settings.steps), global_clipnorm=1.0))
        inputs, _, _ = next(iter(train_ds))
        trainer(inputs)
        trainer.optimizer.build(trainer.trainable_variables)
        trainable = sum(int(v.numpy().size) for v in trainer.trainable_variables)
        tokens = int(train_ids.flat_values.shape[0])
        log.info("%s: masked LM on %s pieces (%s tokens) of %s, lambda %g, %d steps of %d pieces; %s trainable "
                 "parameters", self.name, f"{int(train_ids.nrows()):,}", f"{tokens:,}", origin, weight,
                 settings.steps, settings.batch_size, f"{trainable:,}")
        summary = fit_trainer(trainer, train_ds, valid_ds, workdir, self.name, settings.steps, settings.log_every,
                              settings.log_every, parameter_counts={"trainable": trainable},
                              finish=lambda: backbone.save_weights(os.path.join(workdir, BACKBONE_WEIGHTS)),
                              hint="Lower distill.pretrain.learning_rate.")
        # the masked-LM perplexity of the validation text
        valid = {"val_perplexity": perplexity(summary["val_mle"])} if "val_mle" in summary else {}
        return {"steps": int(trainer.optimizer.iterations.numpy()), "lambda": weight, "pieces": int(train_ids.nrows()),
                "tokens": tokens, "trainable_parameters": trainable, **summary, **valid}


def load_pretrained_backbone(context, student, stage):
    """Load the backbone weights ``stage`` saved into ``student.backbone``; a description."""
    path = os.path.join(context.runner.stage_dir(stage), BACKBONE_WEIGHTS)
    student.backbone.load_weights(path)
    return f"stage {stage}"


__all__ = ["PretrainDistiller", "PretrainStage", "load_pretrained_backbone"]
