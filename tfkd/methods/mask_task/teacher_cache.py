"""``distill.teacher: cache``: the teacher's top-K of ``q(.|X')`` written once, streamed back.

Each kept training example gets one fixed masked copy X', drawn statelessly from
``(cache.seed, example id)`` (:func:`example_masking`), so the cache stage and the training
pipeline derive the same X' without storing it. The stage runs the frozen MLM teacher (the
``teacher_mlm`` stage's head) on ``[CLS] X' [SEP]`` and keeps, at each masked position, the
top K of ``softmax(logits / T)`` over the student's source vocabulary. On disk it is the
top-K cache format (:mod:`tfkd.teachers.topk_cache`): per example id, ``[L, K]``
ids and float16 probabilities over the source positions, zero where nothing was masked.
Training streams the shards through a bounded shuffle buffer; the batches carry
``masked_source_ids``, ``teacher_ids`` and ``teacher_probs``. Unlike ``online``, X' does not
change between epochs.
"""

import logging
import math
import time

import numpy as np
import tensorflow as tf

from tfkd import data as data_lib
from tfkd.masking import example_masking
from tfkd.methods.mask_task.distiller import teacher_view
from tfkd.runner import Stage
from tfkd.teachers.checkpoints import teacher_tokenizer, vocabulary_maps
from tfkd.teachers.mlm_head import load_trained_teacher
from tfkd.teachers.mlm_plan import MLM_CACHE_STAGE
from tfkd.teachers.topk_cache import (
    CacheWriter,
    read_manifest,
    stream_cache,
    top_k_distribution,
    write_masked_top_k,
)

log = logging.getLogger("tfkd")


def _masking_settings(spec, source_tokenizer):
    return {
        "seed": spec.distill.cache.seed,
        "mask_id": source_tokenizer.token_to_id(data_lib.MASK),
        "vocab_size": source_tokenizer.vocabulary_size(),
        "masking": spec.distill.masking,
        "rate": spec.distill.mask_rate,
    }


class MaskTaskCacheStage(Stage):
    name = MLM_CACHE_STAGE
    runs_in_train_precision = True

    def config(self, spec):
        distill = spec.distill
        return {
            "cache": distill.cache.model_dump(mode="json", exclude={"shuffle_buffer"}),
            "masking": distill.masking,
            "mask_rate": distill.mask_rate,
            "max_tokens": spec.data.max_tokens,
        }

    def run(self, context, workdir):
        spec = context.spec
        cache = spec.distill.cache
        tokenized = context.task.tokenized(context, "train", self.name)
        source_tokenizer = context.tokenizers().source
        teacher_tok = teacher_tokenizer(spec.teacher.checkpoint)
        to_teacher, _ = vocabulary_maps(source_tokenizer, teacher_tok, self.name, "data.source_tokenizer.kind")
        special, pad = data_lib.SpecialIds.of(teacher_tok), source_tokenizer.token_to_id(data_lib.PAD)
        settings = _masking_settings(spec, source_tokenizer)
        teacher = load_trained_teacher(context)

        @tf.function(reduce_retracing=True)
        def forward(masked, positions):
            inputs = teacher_view(masked, to_teacher, special, pad)
            inputs["mask_positions"] = positions + 1
            logits = tf.gather(tf.cast(teacher(inputs, training=False), tf.float32), to_teacher, axis=-1)
            return top_k_distribution(logits, cache.top_k, cache.temperature, with_tail=True)

        size = cache.batch_size
        batches, rows, lengths = _masked_batches(tokenized, settings, pad, size, cache.seed)
        writer = CacheWriter(
            workdir,
            cache.shard_size,
            cache.top_k,
            {
                "temperature": cache.temperature,
                "masking": spec.distill.masking,
                "mask_rate": spec.distill.mask_rate,
                "seed": cache.seed,
                "ids": "student source vocabulary",
                "positions": "source",
            },
            tail=True,  # the mass outside the K, for distill.tail
        )
        start = time.time()
        masked_positions = write_masked_top_k(writer, batches, rows, lengths, tokenized.kept, forward, size)
        seconds = max(time.time() - start, 1e-9)
        manifest = writer.close()
        log.info(
            "%s: top-%d of q(.|X') at %d masked positions of %d sentences in %.0fs (%.1f sentences/s), "
            "%.1f MB in %d shards",
            self.name,
            cache.top_k,
            masked_positions,
            manifest["examples"],
            seconds,
            manifest["examples"] / seconds,
            manifest["bytes"] / 1e6,
            len(manifest["shards"]),
        )
        return {
            "examples": manifest["examples"],
            "masked_positions": masked_positions,
            "sentences_per_second": round(manifest["examples"] / seconds, 1),
            "bytes": manifest["bytes"],
        }


def _masked_batches(tokenized, settings, pad, size, seed):
    """``(batches, rows, lengths)``: every training source with its fixed masking (``masked``,
    ``chosen``), in padded batches of ``size`` of like lengths written in an order shuffled by
    ``seed``; ``rows`` the examples' rows in that order, ``lengths`` each row's length."""
    lengths = tokenized.source_ids.row_lengths().numpy()
    order = np.argsort(lengths, kind="stable")
    steps = math.ceil(len(order) / size)
    # batches of similar lengths, written in a random order (a shard is not sorted by length);
    # the one short batch goes last, so the pipeline's batches are exactly these
    chunks = np.random.default_rng(seed).permutation(steps - 1).tolist() + [steps - 1]
    rows = np.concatenate([order[c * size : (c + 1) * size] for c in chunks])
    examples = tf.data.Dataset.from_tensor_slices(
        {"source": tf.gather(tokenized.source_ids, rows), "id": tokenized.kept[rows]}
    )
    examples = examples.map(
        lambda x: dict(zip(("masked", "chosen"), example_masking(x["source"], x["id"], **settings))),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    batches = examples.padded_batch(size, padding_values={"masked": pad, "chosen": False}).prefetch(tf.data.AUTOTUNE)
    return batches, rows, lengths


def cached_columns(context, spec, stage_name):
    """The cache streamed by example id, each example with its fixed X' re-derived."""
    from tfkd.tasks.translation.data import pair_table

    directory = context.runner.stage_dir(MLM_CACHE_STAGE)
    tokenized = context.task.tokenized(context, "train", stage_name)
    manifest = read_manifest(directory)
    cache = spec.distill.cache
    log.info(
        "%s: q(.|X') for %d examples streamed from the cache (K=%d, T=%g, %d shards, shuffle buffer %d)",
        stage_name,
        len(tokenized),
        manifest["top_k"],
        manifest["temperature"],
        len(manifest["shards"]),
        cache.shuffle_buffer,
    )
    if spec.distill.tail and not manifest.get("tail"):
        log.warning(
            "%s: distill.tail: the teacher cache %s keeps no tail mass (an older tfkd wrote it): its K "
            "probabilities are renormalised instead; delete that folder and run again to rewrite it with the tail",
            stage_name,
            directory,
        )
    table = pair_table(tokenized)
    settings = _masking_settings(spec, context.tokenizers().source)

    def with_masked_source(item):
        source = table.join({"id": item["id"]})["source"]
        masked, _ = example_masking(source, item["id"], **settings)
        return {**item, "masked_source_ids": masked}

    stream = stream_cache(
        directory, expected_ids=tokenized.kept, seed=spec.train.seed, shuffle_buffer=cache.shuffle_buffer
    )
    return stream.map(with_masked_source, num_parallel_calls=tf.data.AUTOTUNE)
