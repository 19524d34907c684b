"""LightPAFF's pre-training distillation for BERT (appendix eq. 2).

The student's encoder (``student.backbone``, a keras-hub ``BertBackbone`` with the teacher's
vocabulary) and keras-hub's ``MaskedLMHead`` tied to its token embedding learn masked LM from
scratch on the pre-training text: lines longer than ``max_length`` are cut into pieces, each
framed ``[CLS] x [SEP]``, 15% of the tokens masked 80/10/10 with a new seed per batch
(:func:`tfkd.teachers.mlm_head.mlm_batches`). Over the masked positions the loss is
``(1 - lambda) * CE(x_m) + lambda * KL(q(.|x\\M) || p(.|x\\M))`` with ``q`` the frozen
teacher's masked-LM distribution on the same masked batch. ``lambda = 0`` (stage
``pretrain_mle``) is plain MLM pre-training, with no teacher. The stage keeps the backbone's
weights; fine-tuning loads them (:func:`load_pretrained_backbone`).

With ``distill.teacher: cache`` the ``teacher_mlm_cache`` stage (:class:`PretrainCacheStage`)
first writes, for every piece, one fixed masking drawn from ``(cache.seed, piece id)`` and the
teacher's top K at its masked positions (a top-K cache, :mod:`tfkd.teachers.topk_cache`:
sharded, keyed by id); pre-training then streams it (:func:`cached_batches`) and the KL is
taken over the K cached ids (:func:`tfkd.training.losses.top_k_kl_divergence`). The masking no longer changes
between passes, as in the original BERT's static masking, and the teacher no longer runs
during training.
"""

import logging
import math
import os
import time

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops

from tfkd import data as data_lib
from tfkd.errors import StageError
from tfkd.layers.precision import masked_lm_head_in_float32
from tfkd.masking import chosen_predictions, example_masking
from tfkd.methods.two_stage.settings import PRETRAIN_KD, kd_pretrain_lambda, pretrain_settings
from tfkd.methods.two_stage.teacher import BACKBONE_WEIGHTS
from tfkd.models.abilities import BackboneStudent
from tfkd.runner import Stage
from tfkd.teachers.mlm_head import load_trained_teacher, mlm_batches
from tfkd.teachers.mlm_plan import MLM_CACHE_STAGE
from tfkd.training.losses import kl_divergence, log_softmax_at, top_k_kl_divergence
from tfkd.training.schedules import section_adam
from tfkd.training.trainer import LossTerm, Trainer

log = logging.getLogger("tfkd")


class PretrainDistiller(Trainer):
    """Masked LM with ``{mle: 1 - lambda, kd: lambda}`` over the masked positions.

    Args:
        masked_lm: the student's ``BertMaskedLM`` (inputs with ``mask_positions`` -> logits).
        teacher: the frozen teacher ``BertMaskedLM`` (same vocabulary), or ``None`` (MLE only).
        loss_weights: ``{"mle": 1 - lambda, "kd": lambda}`` (terms with weight 0 left out).
    """

    def __init__(self, masked_lm, teacher, loss_weights, **kwargs):
        super().__init__(
            masked_lm, loss_weights, reported_terms=("mle", *(("kd",) if teacher is not None else ())), **kwargs
        )
        self.teacher = teacher

    def call(self, inputs, training=False):
        return self.student({k: inputs[k] for k in MODEL_INPUTS}, training=training)

    def compute_terms(self, data, training):
        inputs, labels, weights = data
        model_inputs = {k: inputs[k] for k in MODEL_INPUTS}
        logits = self.student(model_inputs, training=training)
        weights = ops.cast(weights, "float32")
        count = ops.sum(weights)
        nll = -log_softmax_at(logits, ops.expand_dims(labels, -1))[..., 0]
        terms = {"mle": LossTerm(ops.sum(nll * weights), count)}
        if self.teacher is not None:
            teacher_probs = ops.softmax(ops.cast(self.teacher(model_inputs, training=False), "float32"), axis=-1)
            terms["kd"] = LossTerm(ops.sum(kl_divergence(ops.stop_gradient(teacher_probs), logits) * weights), count)
        elif "teacher_probs" in inputs:  # the teacher's top K at these positions, from the cache
            kl = top_k_kl_divergence(inputs["teacher_ids"], inputs["teacher_probs"], logits)
            terms["kd"] = LossTerm(ops.sum(kl * weights), count)
        return terms, ops.sum(ops.cast(inputs["padding_mask"], "float32"))


MODEL_INPUTS = ("token_ids", "segment_ids", "padding_mask", "mask_positions")


def perplexity(mean_nll):
    """``exp(mean NLL)`` of the masked tokens (``None`` when there is none)."""
    return None if mean_nll is None or math.isnan(mean_nll) else round(math.exp(mean_nll), 3)


def _settings(spec):
    return pretrain_settings(spec)


def input_tokenizer(tokenizers):
    """The student's input vocabulary: the task's first tokenizer (a classifier's text)."""
    return tokenizers[0]


class StudentPretrainStage(Stage):
    """A stage pre-training the student: ``pretrain_kd`` (distilling with the run's lambda) or
    ``pretrain_mle`` (lambda 0, no teacher)."""

    runs_in_train_precision = True

    def __init__(self, name):
        self.name = name
        self.distils = name == PRETRAIN_KD

    def kd_lambda(self, spec):
        return kd_pretrain_lambda(spec) if self.distils else 0.0


class PretrainStage(StudentPretrainStage):
    """Masked-LM pre-training of the student's backbone (the teacher's MLM online or cached)."""

    def cached(self, spec):
        return self.distils and spec.distill.teacher == "cache"

    def config(self, spec):
        from tfkd.methods.two_stage.teacher import text_key

        settings = _settings(spec)
        dump = settings.model_dump(mode="json", by_alias=True, exclude={"enabled", "text", "valid_text"})
        dump.update(
            {
                "lambda": self.kd_lambda(spec),
                "text": text_key(settings.text, settings.text_limit),
                "valid_text": text_key([settings.valid_text], settings.valid_limit),
            }
        )
        config = {
            "pretrain": dump,
            "student": spec.student.model_dump(mode="json"),
            "seed": spec.train.seed,
            "teacher": spec.teacher.checkpoint if self.distils else None,
            "imports": spec.imports,
        }
        if self.cached(spec):  # the cache's own key covers the teacher and the masks
            config.update(teacher="cache", shuffle_buffer=spec.distill.cache.shuffle_buffer)
        return config

    def input_files(self, spec):
        from tfkd.methods.two_stage.teacher import text_files

        settings = _settings(spec)
        return text_files(settings.text) + text_files([settings.valid_text])

    def run(self, context, workdir):
        from tfkd.training.fit import FitSettings, fit_trainer

        spec = context.spec
        settings = _settings(spec)
        weight = self.kd_lambda(spec)
        keras.utils.set_random_seed(spec.train.seed)
        tokenizers = context.tokenizers()
        tokenizer = input_tokenizer(tokenizers)
        train_ids, origin = pretraining_pieces(context, "train", self.name)

        def make_train_ds():
            if self.cached(spec):
                return cached_batches(context, spec, train_ids, tokenizer)
            return mlm_batches(
                train_ids, tokenizer, settings, "token", settings.mask_rate, spec.train.seed, training=True
            )

        train_ds = make_train_ds()
        valid_ds = self._valid_batches(context, settings, tokenizer)
        backbone, masked_lm = self._masked_lm(spec, context.task.build_student(spec, tokenizers))
        trainer = self._trainer(context, masked_lm, weight, train_ds)
        trainable = sum(int(np.prod(v.shape)) for v in trainer.trainable_variables)
        tokens = int(train_ids.flat_values.shape[0])
        log.info(
            "%s: masked LM on %s pieces (%s tokens) of %s, lambda %g (teacher %s), %d steps of %d pieces; %s "
            "trainable parameters",
            self.name,
            f"{int(train_ids.nrows()):,}",
            f"{tokens:,}",
            origin,
            weight,
            "none" if not self.distils else spec.distill.teacher,
            settings.steps,
            settings.batch_size,
            f"{trainable:,}",
        )
        fitting = FitSettings(
            settings.steps,
            checkpoint_every=settings.log_every,
            log_every=settings.log_every,
            parameter_counts={"trainable": trainable},
            finish=lambda: backbone.save_weights(os.path.join(workdir, BACKBONE_WEIGHTS)),
            hint="Lower distill.pretrain.learning_rate.",
            remake_train_ds=make_train_ds,
        )
        summary = fit_trainer(trainer, train_ds, valid_ds, workdir, self.name, fitting)
        # the masked-LM perplexity of the validation text
        valid = {"val_perplexity": perplexity(summary["val_mle"])} if "val_mle" in summary else {}
        return {
            "steps": int(trainer.optimizer.iterations.numpy()),
            "lambda": weight,
            "pieces": int(train_ids.nrows()),
            "tokens": tokens,
            "trainable_parameters": trainable,
            **summary,
            **valid,
        }

    def _trainer(self, context, masked_lm, weight, train_ds):
        """The :class:`PretrainDistiller` of ``masked_lm`` (``(1 - weight) * mle + weight * kd``,
        the live teacher loaded unless the stage distils from a cache), compiled and built."""
        from tfkd.stages import compile_and_build

        spec, settings = context.spec, _settings(context.spec)
        teacher = load_trained_teacher(context) if self.distils and not self.cached(spec) else None
        loss_weights = {name: w for name, w in (("mle", 1.0 - weight), ("kd", weight)) if w > 0}
        trainer = PretrainDistiller(masked_lm, teacher, loss_weights)
        compile_and_build(trainer, section_adam(settings, clipnorm=1.0), train_ds, jit_compile=spec.train.jit_compile)
        return trainer

    def _valid_batches(self, context, settings, tokenizer):
        """The validation text's masked-LM batches (fixed maskings), or ``None`` without one."""
        if not settings.valid_text:
            return None
        valid_ids, _ = pretraining_pieces(context, "valid", self.name)
        if not int(valid_ids.nrows()):
            return None
        return mlm_batches(
            valid_ids, tokenizer, settings, "token", settings.mask_rate, context.spec.train.seed, training=False
        )

    def _masked_lm(self, spec, student):
        """``(backbone, masked LM)``: the student's keras-hub BERT backbone and a masked-LM model
        on it (its head in float32); a one-line error for a student without one."""
        backbone = student.backbone if isinstance(student, BackboneStudent) else None
        if not isinstance(backbone, keras_hub.models.BertBackbone):
            raise StageError(
                f"{self.name}: MLM pre-training needs a student that is a tfkd.models.abilities.BackboneStudent "
                f"wrapping a keras-hub BertBackbone; student {spec.student.kind} ({type(student).__name__}) is not"
            )
        masked_lm = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
        masked_lm_head_in_float32(masked_lm.masked_lm_head)
        return backbone, masked_lm


def pretraining_pieces(context, split, stage_name):
    """``(ids, origin)``: the pre-training text of ``split`` (``train`` or ``valid``) in the
    student's vocabulary, each line cut into pieces of at most ``max_length - 2`` tokens (a
    piece's id is its row)."""
    from tfkd.methods.two_stage.teacher import read_texts

    settings = _settings(context.spec)
    entries, limit, key = (
        (settings.text, settings.text_limit, "distill.pretrain.text")
        if split == "train"
        else ([settings.valid_text], settings.valid_limit, "distill.pretrain.valid_text")
    )

    def make():
        lines, origin = read_texts(entries, limit, key)
        ids = data_lib.tokenize_to_ragged(input_tokenizer(context.tokenizers()), lines)
        ids = tf.ragged.boolean_mask(ids, ids.row_lengths() > 0)
        return data_lib.chunk_rows(ids, settings.max_length - 2), origin

    return context.memo(("two_stage", "pieces", split), make)


def _masking(spec, tokenizer):
    return {
        "seed": spec.distill.cache.seed,
        "mask_id": tokenizer.token_to_id(data_lib.MASK),
        "vocab_size": tokenizer.vocabulary_size(),
        "masking": "token",
        "rate": _settings(spec).mask_rate,
    }


def _framed(piece, masked, chosen, special):
    """``[CLS] x [SEP]`` of a piece: (original, masked, chosen), the frame never chosen."""
    bos, eos = tf.constant([special.bos], tf.int32), tf.constant([special.eos], tf.int32)
    no = tf.constant([False])
    return (
        tf.concat([bos, tf.cast(piece, tf.int32), eos], 0),
        tf.concat([bos, tf.cast(masked, tf.int32), eos], 0),
        tf.concat([no, chosen, no], 0),
    )


class PretrainCacheStage(Stage):
    """``teacher_mlm_cache``: the teacher's top K at one fixed masking of every pre-training piece."""

    name = MLM_CACHE_STAGE
    runs_in_train_precision = True

    def config(self, spec):
        from tfkd.methods.two_stage.teacher import text_key

        settings = _settings(spec)
        return {
            "cache": spec.distill.cache.model_dump(mode="json", exclude={"shuffle_buffer"}),
            "mask_rate": settings.mask_rate,
            "max_length": settings.max_length,
            "text": text_key(settings.text, settings.text_limit),
            "checkpoint": spec.teacher.checkpoint,
        }

    def input_files(self, spec):
        from tfkd.methods.two_stage.teacher import text_files

        return text_files(_settings(spec).text)

    def run(self, context, workdir):
        from tfkd.teachers.topk_cache import CacheWriter, write_masked_top_k

        spec = context.spec
        cache = spec.distill.cache
        tokenizer = input_tokenizer(context.tokenizers())
        special = data_lib.SpecialIds.of(tokenizer)
        masking = _masking(spec, tokenizer)
        pieces, origin = pretraining_pieces(context, "train", self.name)
        forward = _teacher_top_k(load_trained_teacher(context), special, cache)
        lengths = pieces.row_lengths().numpy()
        order = np.argsort(lengths, kind="stable")  # batches of similar lengths
        size = cache.batch_size
        batches = _framed_batches(pieces, order, masking, special, size)
        writer = CacheWriter(
            workdir,
            cache.shard_size,
            cache.top_k,
            {
                "temperature": cache.temperature,
                "masking": "token",
                "mask_rate": masking["rate"],
                "seed": cache.seed,
                "ids": "student vocabulary",
                "positions": "piece",
            },
        )
        start = time.time()
        # a piece's id is its row; positions count from after [CLS]
        masked_positions = write_masked_top_k(
            writer, batches, order, lengths, np.arange(len(lengths)), forward, size, offset=1
        )
        seconds = max(time.time() - start, 1e-9)
        manifest = writer.close()
        log.info(
            "%s: top-%d of the teacher at %d masked positions of %d pieces of %s in %.0fs (%.1f pieces/s), "
            "%.1f MB in %d shards",
            self.name,
            cache.top_k,
            masked_positions,
            manifest["examples"],
            origin,
            seconds,
            manifest["examples"] / seconds,
            manifest["bytes"] / 1e6,
            len(manifest["shards"]),
        )
        return {
            "examples": manifest["examples"],
            "masked_positions": masked_positions,
            "pieces_per_second": round(manifest["examples"] / seconds, 1),
            "bytes": manifest["bytes"],
        }


def _teacher_top_k(teacher, special, cache):
    """``(token_ids, positions) -> (ids, probs)``: the masked-LM teacher's top K of
    ``softmax(logits / T)`` at ``positions`` (``cache.top_k``, ``cache.temperature``)."""
    from tfkd.teachers.topk_cache import top_k_distribution

    @tf.function(reduce_retracing=True)
    def forward(token_ids, positions):
        inputs = {
            "token_ids": token_ids,
            "segment_ids": tf.zeros_like(token_ids),
            "padding_mask": tf.not_equal(token_ids, special.pad),
            "mask_positions": positions,
        }
        return top_k_distribution(teacher(inputs, training=False), cache.top_k, cache.temperature)

    return forward


def _framed_batches(pieces, order, masking, special, size):
    """Padded batches of ``size`` of ``pieces`` in ``order``, each framed ``[CLS] x [SEP]`` with
    its fixed masking (``masked``, ``chosen``; a piece's id is its row)."""

    def framed(item):
        _, masked, chosen = _framed(item["piece"], *example_masking(item["piece"], item["id"], **masking), special)
        return {"masked": masked, "chosen": chosen}

    return (
        tf.data.Dataset.from_tensor_slices({"piece": tf.gather(pieces, order), "id": order})
        .map(framed, num_parallel_calls=tf.data.AUTOTUNE)
        .padded_batch(size, padding_values={"masked": special.pad, "chosen": False})
        .prefetch(tf.data.AUTOTUNE)
    )


def cached_batches(context, spec, pieces, tokenizer):
    """Pre-training batches from the ``teacher_mlm_cache`` stage: the pieces in the cache's
    (shuffled) order, each with its fixed masking re-derived, and the teacher's top K at the
    masked positions (``teacher_ids``, ``teacher_probs`` ``[B, P, K]``)."""
    from tfkd.teachers.topk_cache import stream_cache

    settings = _settings(spec)
    special = data_lib.SpecialIds.of(tokenizer)
    masking = _masking(spec, tokenizer)
    n = int(pieces.nrows())
    stream = stream_cache(
        context.runner.stage_dir(MLM_CACHE_STAGE),
        expected_ids=np.arange(n),
        seed=spec.train.seed,
        shuffle_buffer=spec.distill.cache.shuffle_buffer,
    ).repeat()

    def example(item):
        piece = pieces[item["id"]]
        original, masked, chosen = _framed(piece, *example_masking(piece, item["id"], **masking), special)
        zero = tf.zeros([1, tf.shape(item["teacher_ids"])[1]])
        return {
            "original": original,
            "masked": masked,
            "chosen": chosen,
            "teacher_ids": tf.concat([tf.cast(zero, tf.int32), item["teacher_ids"], tf.cast(zero, tf.int32)], 0),
            "teacher_probs": tf.concat([zero, tf.cast(item["teacher_probs"], tf.float32), zero], 0),
        }

    def to_batch(batch):
        positions, labels, weights = chosen_predictions(batch["original"], batch["chosen"])
        inputs = {
            "token_ids": batch["masked"],
            "segment_ids": tf.zeros_like(batch["masked"]),
            "padding_mask": tf.not_equal(batch["masked"], special.pad),
            "mask_positions": positions,
            "teacher_ids": tf.gather(batch["teacher_ids"], positions, batch_dims=1),
            "teacher_probs": tf.gather(batch["teacher_probs"], positions, batch_dims=1),
        }
        return inputs, labels, weights

    return (
        stream.map(example, num_parallel_calls=tf.data.AUTOTUNE)
        .padded_batch(
            settings.batch_size,
            padding_values={
                "original": special.pad,
                "masked": special.pad,
                "chosen": False,
                "teacher_ids": 0,
                "teacher_probs": 0.0,
            },
        )
        .map(to_batch, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def backbone_of(model):
    """What pre-training hands to fine-tuning: a model's pretrained backbone (a seq2seq model
    pre-trained by MASS is whole: it is its own backbone)."""
    return model.backbone if isinstance(model, BackboneStudent) else model


def load_pretrained_backbone(context, student, stage):
    """Load the backbone weights ``stage`` saved into ``backbone_of(student)``; a description."""
    path = os.path.join(context.runner.stage_dir(stage), BACKBONE_WEIGHTS)
    backbone_of(student).load_weights(path)
    return f"stage {stage}"


__all__ = [
    "PretrainCacheStage",
    "PretrainDistiller",
    "PretrainStage",
    "StudentPretrainStage",
    "backbone_of",
    "cached_batches",
    "load_pretrained_backbone",
    "pretraining_pieces",
]
