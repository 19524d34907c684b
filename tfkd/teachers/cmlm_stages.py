"""The C-MLM teacher's stages (cmlm_kd.txt): fine-tuning, then its top-K cache over every
target position (:mod:`tfkd.teachers.cmlm`); the ``soft_target`` and ``ensemble`` methods
plan them (:func:`cmlm_teacher_stages`)."""

import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfkd import data as data_lib
from tfkd.progress import progress_bar
from tfkd.runner import Stage
from tfkd.teachers.checkpoints import teacher_tokenizer, vocabulary_maps
from tfkd.teachers.cmlm import (
    cmlm_mask,
    left_to_right_soft_targets,
    left_to_right_targets,
    load_cmlm_teacher,
    pack_pairs,
    soft_targets,
)
from tfkd.teachers.topk_cache import CacheWriter
from tfkd.training.masked_lm import TEACHER_WEIGHTS, VALIDATION_MASKING_STREAM, fit_masked_lm

log = logging.getLogger("tfkd")


def spec_task(spec):
    from tfkd import registry

    return registry.lookup("task", spec.task)


def _cmlm_dataset(tokenized, special_ids, mask_id, vocab_size, finetune, shuffle_buffer=None, seed=None):
    """C-MLM batches; shuffled and repeated with a ``shuffle_buffer`` (training: each batch
    masked from its own seed, drawn from ``finetune.seed``, so the masks differ every epoch
    and replay exactly, whatever runs in parallel), else one pass with a fixed masking drawn
    from ``seed`` (validation)."""
    ds = tf.data.Dataset.from_tensor_slices({"source": tokenized.source_ids, "target": tokenized.target_ids})
    if shuffle_buffer:
        ds = ds.shuffle(min(len(tokenized), shuffle_buffer), seed=finetune.seed).repeat()
        seeds = tf.data.Dataset.random(seed=finetune.seed).batch(2)
    else:
        seeds = tf.data.Dataset.from_tensors(tf.cast(seed, tf.int64)).repeat()
    if shuffle_buffer and finetune.bucket_width:
        batches = _length_bucketed(ds, finetune.batch_size, finetune.bucket_width)
    else:
        batches = ds.ragged_batch(finetune.batch_size)
    ds = tf.data.Dataset.zip((batches, seeds))

    def to_mlm_batch(batch, batch_seed):
        token_ids, segment_ids, padding = pack_pairs(batch["source"], batch["target"], finetune.max_length, special_ids)
        if finetune.direction == "left_to_right":
            positions, labels, weights = left_to_right_targets(token_ids, segment_ids, padding)
        else:
            token_ids, positions, labels, weights = cmlm_mask(
                token_ids, segment_ids, padding, finetune.mask_rate, mask_id, vocab_size, seed=batch_seed
            )
        inputs = {
            "token_ids": token_ids,
            "segment_ids": segment_ids,
            "padding_mask": padding,
            "mask_positions": positions,
        }
        return inputs, labels, weights

    return ds.map(to_mlm_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _length_bucketed(pairs, batch_size, bucket_width):
    """Batches of ``batch_size`` of ``pairs`` (a stream of ``{"source", "target"}``) whose
    packed lengths (``[CLS] X [SEP] Y [SEP]``) fall in the same multiple of ``bucket_width``,
    grouped in the order they stream (``distill.finetune.bucket_width``)."""

    def bucket(pair):
        length = tf.size(pair["source"], out_type=tf.int64) + tf.size(pair["target"], out_type=tf.int64) + 3
        return length // bucket_width

    return pairs.group_by_window(bucket, lambda _, window: window.ragged_batch(batch_size), window_size=batch_size)


def _teacher_tokenized(context, name, split):
    spec = context.spec
    tokenizer = teacher_tokenizer(spec.teacher.checkpoint)
    limit = spec.distill.finetune.max_length - 3
    return tokenizer, context.task.tokenized_with(context, split, tokenizer, tokenizer, limit, name)


class CMLMFinetuneStage(Stage):
    """C-MLM: mask ``mask_rate`` of the target tokens of ``[CLS] X [SEP] Y [SEP]`` and train the
    teacher's tied MLM head (and body) to predict them; Adam with a triangular schedule.
    ``direction: left_to_right`` trains BERT_l2r instead: every target token, from the
    source and the target tokens before it."""

    name = "teacher_finetune"
    runs_in_train_precision = True

    def config(self, spec):
        return {
            "checkpoint": spec.teacher.checkpoint,
            "finetune": spec.distill.finetune.model_dump(mode="json"),
            "data": spec_task(spec).data_key(spec, ["train", "valid"]),
            "shuffle_buffer": spec.data.shuffle_buffer,
        }

    def input_files(self, spec):
        return spec_task(spec).data_files(spec, ["train", "valid"])

    def run(self, context, workdir):
        finetune = context.spec.distill.finetune
        keras.utils.set_random_seed(finetune.seed)
        tokenizer, train_tok = _teacher_tokenized(context, self.name, "train")
        _, valid_tok = _teacher_tokenized(context, self.name, "valid")
        special = data_lib.SpecialIds.of(tokenizer)
        mask_id = tokenizer.token_to_id(data_lib.MASK)
        vocab_size = tokenizer.vocabulary_size()

        def make_train_ds():
            return _cmlm_dataset(
                train_tok, special, mask_id, vocab_size, finetune, shuffle_buffer=context.spec.data.shuffle_buffer
            )

        train_ds = make_train_ds()
        # a fixed masking of the validation pairs, so accuracies compare across runs
        valid_ds = _cmlm_dataset(
            valid_tok,
            special,
            mask_id,
            vocab_size,
            finetune,
            seed=tf.constant([finetune.seed, VALIDATION_MASKING_STREAM]),
        )

        teacher = load_cmlm_teacher(context.spec.teacher.checkpoint, finetune.direction)
        return fit_masked_lm(
            teacher,
            train_ds,
            valid_ds,
            finetune,
            workdir,
            self.name,
            f"C-MLM on {len(train_tok):,} pairs of {finetune.batch_size}",
            hint="Lower distill.finetune.learning_rate.",
            jit_compile=context.spec.train.jit_compile,
            remake_train_ds=make_train_ds,
        )


class TeacherCacheStage(Stage):
    """Top-K soft targets of the fine-tuned teacher for every target position of every kept
    training pair (:func:`tfkd.teachers.cmlm.soft_targets`, written as a
    :mod:`tfkd.teachers.topk_cache`)."""

    name = "teacher_cache"
    runs_in_train_precision = True

    def config(self, spec):
        # the shuffle buffer is how training reads the cache, not what is in it
        return {
            "cache": spec.distill.cache.model_dump(mode="json", exclude={"shuffle_buffer"}),
            "max_tokens": spec.data.max_tokens,
            "max_length": spec.distill.finetune.max_length,
        }

    def run(self, context, workdir):
        spec = context.spec
        cache = spec.distill.cache
        train_tok = context.task.tokenized(context, "train", self.name)
        tokenizer = teacher_tokenizer(spec.teacher.checkpoint)
        to_teacher, to_student = vocabulary_maps(
            context.tokenizers().target, tokenizer, self.name, "data.target_tokenizer.kind"
        )
        corpus = context.task.corpus(context, "train")
        teacher_source = data_lib.tokenize_to_ragged(tokenizer, [corpus.source[i] for i in train_tok.kept])
        teacher_target = tf.ragged.map_flat_values(tf.gather, to_teacher, train_tok.target_ids)
        forward = _teacher_soft_targets(context, tokenizer, teacher_source[:1], teacher_target[:1])
        direction = spec.distill.finetune.direction
        writer = CacheWriter(
            workdir,
            cache.shard_size,
            cache.top_k,
            {
                "temperature": cache.temperature,
                "mask_rate": cache.mask_rate,
                "direction": direction,
                "ids": "student target vocabulary",
                "groups": 1 if direction == "left_to_right" else math.ceil(1 / cache.mask_rate),
            },
            tail=True,
        )
        start = time.time()
        outside = _write_soft_targets(
            writer,
            forward,
            teacher_source,
            teacher_target,
            train_tok,
            to_student,
            cache.batch_size,
            spec.distill.finetune.seed,
        )
        seconds = time.time() - start
        manifest = writer.close()
        log.info(
            "%s: %d pairs in %.0fs (%.1f sentences/s), %.1f MB on disk in %d shards; %.2f%% of the "
            "top-K mass is outside the student's vocabulary",
            self.name,
            manifest["examples"],
            seconds,
            manifest["examples"] / max(seconds, 1e-9),
            manifest["bytes"] / 1e6,
            len(manifest["shards"]),
            100 * outside,
        )
        return {
            "examples": manifest["examples"],
            "sentences_per_second": round(manifest["examples"] / seconds, 1),
            "bytes": manifest["bytes"],
            "mass_outside_vocabulary": round(outside, 5),
        }


def _teacher_soft_targets(context, tokenizer, first_source, first_target):
    """The fine-tuned C-MLM teacher's soft targets of a batch of pairs, ``(source, target) ->
    (ids, probs, tail)`` (:func:`soft_targets`, or :func:`left_to_right_soft_targets` for
    ``direction: left_to_right``), traced on the first pair and the teacher's weights loaded."""
    spec = context.spec
    cache = spec.distill.cache
    max_length = max(spec.distill.finetune.max_length, spec.data.max_tokens + 3)
    direction = spec.distill.finetune.direction
    teacher = load_cmlm_teacher(spec.teacher.checkpoint, direction)
    special = data_lib.SpecialIds.of(tokenizer)
    mask_id = tokenizer.token_to_id(data_lib.MASK)
    if direction == "left_to_right":

        def teacher_targets(src, tgt):
            return left_to_right_soft_targets(teacher, src, tgt, special, cache.top_k, cache.temperature, max_length)
    else:

        def teacher_targets(src, tgt):
            return soft_targets(
                teacher, src, tgt, special, mask_id, cache.top_k, cache.temperature, cache.mask_rate, max_length
            )

    forward = tf.function(teacher_targets, reduce_retracing=True, autograph=False)
    forward(first_source, first_target)  # builds the teacher
    teacher.load_weights(os.path.join(context.runner.stage_dir("teacher_finetune"), TEACHER_WEIGHTS))
    return forward


def _write_soft_targets(writer, forward, teacher_source, teacher_target, train_tok, to_student, batch_size, seed):
    """Every pair's soft targets (``forward``'s, mapped to the student's target vocabulary by
    ``to_student``) written with ``writer``, in batches of like lengths written in an order
    shuffled by ``seed``; the share of the teacher's top-K mass outside the student's vocabulary."""
    lengths = train_tok.target_ids.row_lengths().numpy()
    # batches of similar lengths (little padding), written in a random order, so that a shard
    # read through a bounded shuffle buffer is not sorted by length
    order = np.argsort(lengths + teacher_source.row_lengths().numpy(), kind="stable")
    steps = math.ceil(len(order) / batch_size)
    batch_order = np.random.default_rng(seed).permutation(steps)
    bar = progress_bar(len(order), "pair")
    outside, positions = 0.0, int(lengths.sum() + len(lengths))
    for step in range(steps):
        batch = batch_order[step]
        rows = order[batch * batch_size : (batch + 1) * batch_size]
        ids, probs, tail = forward(tf.gather(teacher_source, rows), tf.gather(teacher_target, rows))
        ids, probs = to_student[ids.numpy()], probs.numpy()
        outside += float(probs[ids < 0].sum())
        probs[ids < 0], ids[ids < 0] = 0.0, 0
        # the tail: the teacher's mass outside the K it keeps in the student's vocabulary
        tail = 1.0 - (1.0 - tail.numpy()) * probs.sum(-1)
        for j, row in enumerate(rows):
            length = lengths[row] + 1
            writer.add(train_tok.kept[row], ids[j, :length], probs[j, :length], tail[j, :length])
        if bar:
            bar.update(writer.count)
    return outside / max(positions, 1)
