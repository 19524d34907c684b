"""Top-K caches of student teachers (:mod:`tfkd.teachers.student_plan` plans them): a student
that a train stage of the run trained, or an exported tfkd translation model, teacher-forced on
every kept training pair, its top K at each target position written in the top-K cache format
(:mod:`tfkd.teachers.topk_cache`) over the run's target vocabulary."""

import logging
import math
import os
import time

import numpy as np
import tensorflow as tf

from tfkd import data as data_lib
from tfkd.errors import StageError
from tfkd.progress import progress_bar
from tfkd.runner import Stage
from tfkd.teachers.topk_cache import CacheWriter, top_k_distribution

log = logging.getLogger("tfkd")


def _task(spec):
    from tfkd import registry

    return registry.lookup("task", spec.task)


def _padded(rows, pad, prefix=None):
    """Ragged rows ``[B, None]`` (``prefix`` prepended to each) as a ``[B, L]`` int32 batch."""
    if prefix is not None:
        rows = tf.concat([tf.fill([rows.nrows(), 1], tf.cast(prefix, rows.dtype)), rows], axis=1)
    return tf.cast(rows.to_tensor(default_value=pad), tf.int32)


def write_teacher_cache(workdir, tokenized, teacher_top_k, top_k, batch_size, seed, metadata, tail=False):
    """Write a teacher's top K at every target position of the kept training pairs:
    ``teacher_top_k(rows)`` gives ``(ids, probs)`` ``[len(rows), >= len(y) + 1, K]`` for those
    rows of ``tokenized`` (with ``tail``, ``(ids, probs, tail)``, ``tail`` the mass outside the K
    ``[len(rows), >= len(y) + 1]``, kept in the cache). Batches of similar lengths, written in a
    random order (``seed``), as the C-MLM cache is. Returns ``(manifest, seconds)``."""
    lengths = tokenized.target_ids.row_lengths().numpy()
    order = np.argsort(lengths + tokenized.source_ids.row_lengths().numpy(), kind="stable")
    steps = math.ceil(len(order) / batch_size)
    batch_order = np.random.default_rng(seed).permutation(steps)
    writer = CacheWriter(workdir, 10000, top_k, metadata, tail=tail)
    bar = progress_bar(len(order), "pair")
    start = time.time()
    for step in range(steps):
        rows = order[batch_order[step] * batch_size : (batch_order[step] + 1) * batch_size]
        ids, probs, *rest = teacher_top_k(rows)
        for j, row in enumerate(rows):
            length = lengths[row] + 1
            writer.add(tokenized.kept[row], ids[j, :length], probs[j, :length], *(r[j, :length] for r in rest))
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
    of the kept training pairs, ``batch_size`` pairs a forward pass; with ``tail``, the mass
    outside the K too (one more outcome for the divergences, :mod:`tfkd.distillation.divergences`)."""

    def __init__(self, name, top_k, temperature, batch_size, tail=False):
        self.name = name
        self.top_k, self.temperature, self.batch_size, self.tail = top_k, temperature, batch_size, tail

    def config(self, spec):
        return {
            "top_k": self.top_k,
            "temperature": self.temperature,
            "batch_size": self.batch_size,
            "data": _task(spec).data_key(spec, ["train"]),
            "max_tokens": spec.data.max_tokens,
            # keyed only when kept: the caches of earlier runs keep their keys
            **({"tail": True} if self.tail else {}),
        }

    def cached_outputs(self, logits):
        """The cached outputs of ``logits``: ``(ids, probs)`` or, keeping the tail, ``(ids, probs, tail)``."""
        return top_k_distribution(logits, self.top_k, self.temperature, with_tail=self.tail)

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
            tail=self.tail,
        )
        return _cache_results(self.name, teacher, manifest, seconds, self.top_k, self.temperature)


class StudentTeacherCacheStage(_TeacherCacheStage):
    """The trained student of train stage ``source``, teacher-forced on every kept training
    pair (``[BOS] y`` in, a distribution at each of the ``len(y) + 1`` target positions out):
    the top K of ``softmax(logits / temperature)``, renormalised, in the teacher-cache format,
    over the run's target vocabulary (the source student's own)."""

    def __init__(self, name, source, source_spec, top_k, temperature, batch_size, tail=False):
        super().__init__(name, top_k, temperature, batch_size, tail)
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

        @tf.function(reduce_retracing=True)
        def forward(source, decoder):
            return self.cached_outputs(teacher({"source_ids": source, "decoder_ids": decoder}, training=False))

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

    def __init__(self, name, path, top_k, temperature, batch_size, tail=False):
        super().__init__(name, top_k, temperature, batch_size, tail)
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
            return tuple(t.numpy() for t in self.cached_outputs(out["logits"]))

        return self.write(context, workdir, tokenized, teacher_top_k, f"export {path}")


__all__ = ["ExportTeacherCacheStage", "StudentTeacherCacheStage", "write_teacher_cache"]
