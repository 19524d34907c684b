"""Sequence-level knowledge distillation for translation (Kim & Rush 2016).

With ``distill.targets: teacher_beam`` a train stage learns from (source, teacher translation)
pairs instead of the references. The ``teacher_translations`` stage translates the training
split's sources by beam search with ``distill.targets_from``: a train stage of the same run
(its student, decoded with that stage's ``decode`` settings and ``algorithm: beam``) or an
exported tfkd translation SavedModel version folder (``<run>/export/<model>/<version>/``, decoded
as it was exported). It writes ``train.<tgt_lang>`` into its stage directory, one line per line
of the training split (the example id is the line index), and :func:`teacher_corpus` pairs
those lines with the split's sources; the usual filtering rules (empty or over-long pairs
dropped) then apply to these pairs. The vocabulary, validation and test stay the references'.

Translation is resumable: sentences are decoded in length-sorted chunks, each written
atomically into ``chunks/`` of the stage's partial directory; a killed stage continues from the
last finished chunk. Chunks are consecutive slices of the same length-sorted order
:func:`~tfkd.tasks.translation.inference.translate_in_batches` uses, so the batches (and the
translations) are those of translating the whole split in one call.
"""

import json
import logging
import os
import shutil
import time

from tfkd import registry
from tfkd.errors import StageError
from tfkd.runner import Stage
from tfkd.serving import read_export_info
from tfkd.tasks.translation.sequence_kd_plan import TARGETS_STAGE, TEACHER_TARGETS

log = logging.getLogger("tfkd")

CHUNK_DIR = "chunks"
# decoding batches per chunk (a chunk is the unit a killed stage resumes from)
CHUNK_BATCHES = 16


def uses_teacher_targets(spec):
    """Whether a train stage with this spec learns from the teacher's translations."""
    return getattr(spec.distill, "targets", None) == TEACHER_TARGETS


def targets_path(context):
    """The teacher translations of the training split, in the finished stage's directory."""
    return os.path.join(context.runner.stage_dir(TARGETS_STAGE), f"train.{context.spec.data.tgt_lang}")


def targets_identity(context):
    """What tells one version of the teacher translations from another (for memo keys)."""
    path = targets_path(context)
    if not os.path.exists(path):
        raise StageError(
            f"{path}: no teacher translations; run the {TARGETS_STAGE} stage first "
            f"(tfkd run SPEC --stages {TARGETS_STAGE},...)"
        )
    stat = os.stat(path)
    return (TARGETS_STAGE, os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def teacher_corpus(task, context):
    """The training split with the teacher's translations as targets (same ids: line numbers)."""
    from tfkd.data import read_lines
    from tfkd.tasks.translation.data import ParallelCorpus

    path = targets_path(context)
    targets_identity(context)  # a clear error when missing
    references = task.corpus(context, "train")
    translations = read_lines(path)
    if len(translations) != len(references):
        raise StageError(
            f"{path}: {len(translations)} teacher translations for {len(references)} training "
            f"pairs ({references.origin}); rerun the {TARGETS_STAGE} stage"
        )
    return ParallelCorpus(references.source, translations, f"{references.origin} sources + {path}")


def export_files(path):
    """The files of an exported SavedModel (their content keys the stage), in a fixed order."""
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise StageError(
            f"distill.targets_from: {path}: no SavedModel there (expected an exported model version "
            "folder with saved_model.pb, such as <run>/export/<model>/<version>, as tfkd export "
            "writes it)"
        )
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        found += [os.path.join(root, name) for name in sorted(files)]
    return found


class TeacherTranslationsStage(Stage):
    """Translates the training split's sources with ``source`` by beam search and writes them
    as ``train.<tgt_lang>``.

    Args:
        source: a train stage of the run, or the path of an exported model version folder.
        source_spec: for a train stage, a function from the run's spec to that stage's view
            of it (a variant's spec, say); ``None`` for an exported model.
    """

    name = TARGETS_STAGE

    def __init__(self, source, source_spec=None):
        self.source = source
        self.source_spec = source_spec

    @property
    def from_export(self):
        return self.source_spec is None

    def decode(self, spec):
        """The source stage's decode settings, with beam search."""
        return self.source_spec(spec).decode.model_copy(update={"algorithm": "beam"})

    def config(self, spec):
        task = registry.lookup("task", spec.task)
        config = {"data": task.data_key(spec, ["train"])}
        if self.from_export:  # its decoding is the SavedModel's; its files key the stage
            config["source"] = "export"
        else:
            config["source"] = self.source
            config["decode"] = self.decode(spec).key()
        return config

    def input_files(self, spec):
        files = registry.lookup("task", spec.task).data_files(spec, ["train"])
        return files + (export_files(self.source) if self.from_export else [])

    # ------------------------------------------------------------------ run

    def _translate_function(self, context):
        """``(translate, batch_size, description)``: strings -> {"translations", "scores"}."""
        if self.from_export:
            return (
                load_exported_translator(self.source),
                context.spec.decode.batch_size,
                f"exported model {self.source}",
            )
        from tfkd.stages import load_student

        own = context.with_spec(self.source_spec(context.spec))
        student = load_student(own, self.source)
        from tfkd.models.abilities import ParallelDecoding

        if isinstance(student, ParallelDecoding):
            raise StageError(
                f"{self.name}: stage {self.source}'s student ({own.spec.student.kind}) does not decode "
                "left to right; sequence-level KD translates by beam search, so distill.targets_from "
                "must name a train stage with an autoregressive student (or an exported model)"
            )
        decode = self.decode(context.spec)
        translator = context.task.translator(own, student, decode)
        return (
            translator.translate,
            decode.batch_size,
            f"stage {self.source} ({own.spec.student.kind}, beam {decode.beam_size}, "
            f"length penalty {decode.length_penalty:g})",
        )

    def run(self, context, workdir):
        from tfkd.tasks.translation.metrics import corpus_bleu

        spec = context.spec
        corpus = context.task.corpus(context, "train")
        sources = corpus.source
        translate, batch_size, description = self._translate_function(context)
        chunk_dir = os.path.join(workdir, CHUNK_DIR)
        os.makedirs(chunk_dir, exist_ok=True)
        log.info("%s: translating %d training sentences with %s", self.name, len(sources), description)
        start = time.time()
        translations, scores, translated, resumed = self._translated_in_chunks(
            sources, translate, batch_size, chunk_dir, start
        )
        seconds = max(time.time() - start, 1e-9)
        if resumed:
            log.info("%s: %d sentences from chunks finished before a restart", self.name, resumed)
        _write_atomically(os.path.join(workdir, f"train.{spec.data.tgt_lang}"), "".join(t + "\n" for t in translations))
        shutil.rmtree(chunk_dir)
        bleu, signature = corpus_bleu(translations, corpus.target, spec.evaluate.lowercase, spec.evaluate.tokenize)
        log.info(
            "%s: %d sentences in %.0fs (%.1f sentences/s); BLEU against the references %.2f (%s)",
            self.name,
            len(sources),
            seconds,
            translated / seconds,
            bleu.score,
            signature,
        )
        return {
            "source": self.source,
            "sentences": len(sources),
            "translated": translated,
            "resumed": resumed,
            "seconds": round(seconds, 1),
            "sentences_per_second": round(translated / seconds, 1),
            "bleu_vs_references": round(bleu.score, 2),
            "signature": signature,
            "mean_score": round(float(scores.mean()), 4) if len(scores) else None,
            "empty": sum(1 for t in translations if not t),
        }

    def _translated_in_chunks(self, sources, translate, batch_size, chunk_dir, start):
        """``(translations, scores, sentences translated, sentences read back)``: ``sources``
        translated in chunks of ``CHUNK_BATCHES`` batches, each written to ``chunk_dir`` as it
        finishes and read back from there on a resumed run."""
        import numpy as np

        from tfkd.tasks.translation.inference import translate_in_batches

        # the order translate_in_batches uses: chunks are consecutive runs of its batches
        order = np.argsort([len(s.split()) for s in sources], kind="stable")
        chunk_size = batch_size * CHUNK_BATCHES
        translations, scores = [None] * len(sources), np.zeros(len(sources), np.float32)
        translated, resumed = 0, 0
        for number, first in enumerate(range(0, len(sources), chunk_size)):
            index = order[first : first + chunk_size].tolist()
            path = os.path.join(chunk_dir, f"{number:05d}.json")
            chunk = _read_chunk(path)
            if chunk is None or chunk["ids"] != index:
                outputs, chunk_scores = translate_in_batches(translate, [sources[i] for i in index], batch_size)
                chunk = {
                    "ids": index,
                    "translations": [" ".join(t.splitlines()).strip() for t in outputs],
                    "scores": [float(s) for s in chunk_scores],
                }
                _write_atomically(path, json.dumps(chunk, ensure_ascii=False))
                translated += len(index)
                rate = translated / max(time.time() - start, 1e-9)
                log.info("%s: %d/%d sentences (%.1f sentences/s)", self.name, first + len(index), len(sources), rate)
            else:
                resumed += len(index)
            for i, text, score in zip(chunk["ids"], chunk["translations"], chunk["scores"]):
                translations[i], scores[i] = text, score
        return translations, scores, translated, resumed


def _read_chunk(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_atomically(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def load_exported_translator(path):
    """``translate`` (strings -> {"translations", "scores"}) of an exported tfkd translation
    SavedModel: its ``translate`` signature if it has one, else ``serving_default`` (input named
    in ``assets.extra/tfkd.json``, else its first input)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the ops the graph uses)

    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["translate" if "translate" in loaded.signatures else "serving_default"]
    info = read_export_info(path)
    inputs = list(signature.structured_input_signature[1])
    name = info.get("input") if info.get("input") in inputs else inputs[0]
    if "translations" not in signature.structured_outputs:
        raise StageError(
            f"distill.targets_from: {path}: the SavedModel's signature has no translations output "
            f"(outputs: {', '.join(signature.structured_outputs)}); expected a tfkd translation export"
        )

    def translate(sentences):
        result = signature(**{name: sentences})
        if "scores" not in result:
            result = dict(result, scores=tf.zeros(tf.shape(sentences), tf.float32))
        return result

    translate.loaded = loaded  # keeps the model's variables alive
    return translate


__all__ = ["TeacherTranslationsStage", "load_exported_translator", "teacher_corpus", "uses_teacher_targets"]
