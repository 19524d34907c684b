"""The ensemble's stages: a student of the run cached as a teacher, and the teachers' caches
combined (:mod:`tfkd.methods.ensemble`)."""

import logging
import math
import os
import time

import numpy as np
import tensorflow as tf

from tfkd import data as data_lib
from tfkd.distillation.topk_cache import CacheWriter, read_manifest, stream_cache, top_k_distribution
from tfkd.errors import CacheMismatch, StageError
from tfkd.methods.ensemble.combine import COMBINATIONS
from tfkd.progress import progress_bar
from tfkd.runner import Stage

log = logging.getLogger("tfkd")


def _task(spec):
    from tfkd import registry

    return registry.lookup("task", spec.task)


def _padded(rows, pad, prefix=None):
    """Ragged rows ``[B, None]`` (``prefix`` prepended to each) as a ``[B, L]`` int32 batch."""
    if prefix is not None:
        rows = tf.concat([tf.fill([rows.nrows(), 1], tf.cast(prefix, rows.dtype)), rows], axis=1)
    return tf.cast(rows.to_tensor(default_value=pad), tf.int32)


def write_teacher_cache(workdir, tokenized, teacher_top_k, top_k, batch_size, seed, metadata):
    """Write a teacher's top K at every target position of the kept training pairs:
    ``teacher_top_k(rows)`` gives ``(ids, probs)`` ``[len(rows), >= len(y) + 1, K]`` for those
    rows of ``tokenized``. Batches of similar lengths, written in a random order (``seed``), as
    the C-MLM cache is. Returns ``(manifest, seconds)``."""
    lengths = tokenized.target_ids.row_lengths().numpy()
    order = np.argsort(lengths + tokenized.source_ids.row_lengths().numpy(), kind="stable")
    steps = math.ceil(len(order) / batch_size)
    batch_order = np.random.default_rng(seed).permutation(steps)
    writer = CacheWriter(workdir, 10000, top_k, metadata)
    bar = progress_bar(len(order), "pair")
    start = time.time()
    for step in range(steps):
        rows = order[batch_order[step] * batch_size : (batch_order[step] + 1) * batch_size]
        ids, probs = teacher_top_k(rows)
        for j, row in enumerate(rows):
            length = lengths[row] + 1
            writer.add(tokenized.kept[row], ids[j, :length], probs[j, :length])
        if bar:
            bar.update(writer.count)
    return writer.close(), time.time() - start


def _cache_results(name, teacher, manifest, seconds, top_k, temperature):
    log.info(
        "%s: %s on %d pairs in %.0fs (%.1f sentences/s), top %d at T=%g, %.1f MB",
        name,
        teacher,
        manifest["examples"],
        seconds,
        manifest["examples"] / max(seconds, 1e-9),
        top_k,
        temperature,
        manifest["bytes"] / 1e6,
    )
    return {
        "examples": manifest["examples"],
        "sentences_per_second": round(manifest["examples"] / max(seconds, 1e-9), 1),
        "bytes": manifest["bytes"],
    }


class _TeacherCacheStage(Stage):
    """A teacher's top ``top_k`` of ``softmax(logits / temperature)`` at every target position
    of the kept training pairs, ``batch_size`` pairs a forward pass."""

    def __init__(self, name, top_k, temperature, batch_size):
        self.name = name
        self.top_k, self.temperature, self.batch_size = top_k, temperature, batch_size

    def config(self, spec):
        return {
            "top_k": self.top_k,
            "temperature": self.temperature,
            "batch_size": self.batch_size,
            "data": _task(spec).data_key(spec, ["train"]),
            "max_tokens": spec.data.max_tokens,
        }

    def input_files(self, spec):
        return _task(spec).data_files(spec, ["train"])

    def write(self, context, workdir, tokenized, teacher_top_k, teacher):
        """Cache ``teacher_top_k`` (:func:`write_teacher_cache`) for ``teacher`` (what it is, for
        the manifest and the log); the stage's results."""
        manifest, seconds = write_teacher_cache(
            workdir,
            tokenized,
            teacher_top_k,
            self.top_k,
            self.batch_size,
            context.spec.train.seed,
            {"temperature": self.temperature, "teacher": teacher, "ids": "student target vocabulary"},
        )
        return _cache_results(self.name, teacher, manifest, seconds, self.top_k, self.temperature)


class StudentTeacherCacheStage(_TeacherCacheStage):
    """The trained student of train stage ``source``, teacher-forced on every kept training
    pair (``[BOS] y`` in, a distribution at each of the ``len(y) + 1`` target positions out):
    the top K of ``softmax(logits / temperature)``, renormalised, in the teacher-cache format,
    over the run's target vocabulary (the source student's own)."""

    def __init__(self, name, source, source_spec, top_k, temperature, batch_size):
        super().__init__(name, top_k, temperature, batch_size)
        self.source = source  # upstream: its stage key is part of this one's
        self.source_spec = source_spec

    def config(self, spec):
        # the precision the trained teacher runs in (decode.precision), keyed once it is not float32
        return super().config(spec) | {k: v for k, v in self.source_spec(spec).decode.key().items() if k == "precision"}

    def run(self, context, workdir):
        from tfkd.stages import load_student

        teacher = load_student(context.with_spec(self.source_spec(context.spec)), self.source)
        tokenized = context.task.tokenized(context, "train", self.name)
        special = data_lib.SpecialIds.of(context.tokenizers().target)
        top_k, temperature = self.top_k, self.temperature

        @tf.function(reduce_retracing=True)
        def forward(source, decoder):
            logits = teacher({"source_ids": source, "decoder_ids": decoder}, training=False)
            return top_k_distribution(logits, top_k, temperature)

        def teacher_top_k(rows):
            source = _padded(tf.gather(tokenized.source_ids, rows), special.pad)
            decoder = _padded(tf.gather(tokenized.target_ids, rows), special.pad, prefix=special.bos)
            return tuple(t.numpy() for t in forward(source, decoder))

        return self.write(context, workdir, tokenized, teacher_top_k, f"stage {self.source}")


class ExportTeacherCacheStage(_TeacherCacheStage):
    """A translation model exported by tfkd (a SavedModel version folder with the ``score``
    signature), teacher-forced on every kept training pair's raw text, cached as
    :class:`StudentTeacherCacheStage` caches a student of the run. Its target vocabulary must be
    the run's (``target_vocabulary_sha256`` in its ``tfkd.json``), and it must tokenize each
    training target as the run does; the export's files key the stage."""

    def __init__(self, name, path, top_k, temperature, batch_size):
        super().__init__(name, top_k, temperature, batch_size)
        self.path = path  # its files key the stage (input_files), not its path

    def _saved_model(self):
        from tfkd.serving import find_saved_model

        found = find_saved_model(self.path) if os.path.isdir(self.path) else None
        if found is None:
            raise StageError(
                f"{self.name}: {self.path}: no SavedModel there (expected an exported model version folder "
                "with saved_model.pb, such as <run>/export/<model>/<version>)"
            )
        return found

    def input_files(self, spec):
        found = []
        for root, dirs, files in os.walk(self._saved_model()):
            dirs.sort()
            found += [os.path.join(root, name) for name in sorted(files)]
        return super().input_files(spec) + found

    def run(self, context, workdir):
        from tfkd.serving import read_export_info

        path = self._saved_model()
        info = read_export_info(path)
        if "score" not in info.get("signatures", {}):
            raise StageError(
                f"{self.name}: {path}: the export has no score signature (teacher-forced distributions): "
                "export the model again with this tfkd; a Mask-Predict student has none"
            )
        own = data_lib.vocabulary_sha256(context.tokenizers().target)
        if info.get("target_vocabulary_sha256") != own:
            raise StageError(
                f"{self.name}: {path}: the export's target vocabulary is not the student's (another vocab "
                "stage or tokenizer); a teacher's distributions must be over the student's target tokens"
            )
        score = tf.saved_model.load(path).signatures["score"]
        tokenized = context.task.tokenized(context, "train", self.name)
        corpus = context.task.corpus(context, "train")
        eos = data_lib.SpecialIds.of(context.tokenizers().target).eos
        top_k, temperature = self.top_k, self.temperature

        def teacher_top_k(rows):
            examples = [int(tokenized.kept[r]) for r in rows]
            out = score(
                source=tf.constant([corpus.source[e] for e in examples]),
                target=tf.constant([corpus.target[e] for e in examples]),
            )
            target_ids = out["target_ids"].numpy()
            for j, row in enumerate(rows):
                wanted = np.append(tokenized.target_ids[row].numpy(), eos)
                if not np.array_equal(target_ids[j, : len(wanted)], wanted):
                    raise StageError(
                        f"{self.name}: {path}: the export tokenizes training target {examples[j]} "
                        f"({corpus.origin}) otherwise than the run ({len(wanted)} tokens expected); "
                        "its target tokenizer or max_tokens differ"
                    )
            return tuple(t.numpy() for t in top_k_distribution(out["logits"], top_k, temperature))

        return self.write(context, workdir, tokenized, teacher_top_k, f"export {path}")


class SoftTargetsStage(Stage):
    """The caches of a student's teachers combined into one (``combine``: :mod:`.combine`),
    joined by example id. Bounded memory: the ids are taken in ranges of ``shard_size``
    examples, each range read from every cache in turn, combined and written in a random
    order (so a shard read through a shuffle buffer is not sorted by length or id)."""

    def __init__(self, name, caches, weights, combine, shard_size):
        self.name = name
        self.caches, self.weights, self.combine, self.shard_size = list(caches), list(weights), combine, shard_size

    def config(self, spec):
        # each cache's own key is upstream
        return {
            "caches": self.caches,
            "weights": [round(w, 12) for w in self.weights],
            "combine": self.combine,
            "shard_size": self.shard_size,
        }

    def run(self, context, workdir):
        directories = [context.runner.stage_dir(cache) for cache in self.caches]
        manifests = self._manifests_of_the_same_examples(directories)
        writer = CacheWriter(
            workdir,
            self.shard_size,
            sum(m["top_k"] for m in manifests),
            {
                "combine": self.combine,
                "teachers": [
                    {"cache": c, "weight": w, "top_k": m["top_k"], "temperature": m["temperature"]}
                    for c, w, m in zip(self.caches, self.weights, manifests, strict=True)
                ],
                "ids": "student target vocabulary",
            },
        )
        start = time.time()
        self._write_combined(writer, directories, manifests[0]["examples"])
        manifest = writer.close()
        seconds = time.time() - start
        log.info(
            "%s: %s of %d teachers (weights %s) for %d examples in %.0fs, %d entries a position, %.1f MB",
            self.name,
            self.combine,
            len(self.caches),
            ", ".join(f"{w:.3g}" for w in self.weights),
            manifest["examples"],
            seconds,
            manifest["top_k"],
            manifest["bytes"] / 1e6,
        )
        return {"examples": manifest["examples"], "entries": manifest["top_k"], "bytes": manifest["bytes"]}

    def _manifests_of_the_same_examples(self, directories):
        """The caches' manifests; a one-line error when they hold other training examples."""
        manifests = [read_manifest(d) for d in directories]
        first = manifests[0]
        for cache, manifest in zip(self.caches[1:], manifests[1:], strict=True):
            if (manifest["examples"], manifest.get("ids_sha256")) != (first["examples"], first.get("ids_sha256")):
                raise CacheMismatch(
                    f"{self.name}: the cache of {cache} holds {manifest['examples']} examples that are not the "
                    f"{first['examples']} of {self.caches[0]} (the teachers cached other training examples); "
                    "rerun their cache stages"
                )
        return manifests

    def _write_combined(self, writer, directories, examples):
        """Every example's teachers combined and written with ``writer``: the ids in ranges of
        ``shard_size``, each range read from every cache and written in a random order."""
        combine = COMBINATIONS[self.combine]
        rng = np.random.default_rng(0)
        bar = progress_bar(examples, "example")
        low = 0
        while True:
            entries = [self._read_range(d, low) for d in directories]
            if not entries[0]:
                break
            ids = sorted(entries[0])
            for other, cache in zip(entries[1:], self.caches[1:], strict=True):
                if sorted(other) != ids:
                    raise CacheMismatch(
                        f"{self.name}: the cache of {cache} has other example ids than {self.caches[0]}"
                    )
            for example in rng.permutation(ids):
                rows = [e[example] for e in entries]
                lengths = {r[0].shape[0] for r in rows}
                if len(lengths) != 1:
                    raise CacheMismatch(
                        f"{self.name}: example {example} has {sorted(lengths)} target positions in the "
                        f"caches of {', '.join(self.caches)}; rerun their cache stages"
                    )
                writer.add(example, *combine(rows, self.weights))
            if bar:
                bar.update(writer.count)
            low = ids[-1] + 1

    def _read_range(self, directory, low):
        """``{id: (ids, probs)}`` of the ``shard_size`` smallest ids ``>= low`` in the cache
        (one pass over its shards, holding at most ``2 * shard_size`` entries)."""
        found = {}
        for item in stream_cache(directory).as_numpy_iterator():
            example = int(item["id"])
            if example < low:
                continue
            found[example] = (item["teacher_ids"], item["teacher_probs"].astype(np.float32))
            if len(found) > 2 * self.shard_size:
                for drop in sorted(found)[self.shard_size :]:
                    del found[drop]
        return {k: found[k] for k in sorted(found)[: self.shard_size]}
