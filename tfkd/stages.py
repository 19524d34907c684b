"""The stages of a run: vocab -> train -> evaluate (-> export)."""

import json
import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfkd import data as data_lib
from tfkd import registry
from tfkd.distribute import make_strategy
from tfkd.evaluation import corpus_bleu
from tfkd.inference import Translator
from tfkd.runner import Stage, StageError
from tfkd.training.callbacks import StageCheckpoint, TrainingMonitor
from tfkd.training.schedules import InverseSqrtSchedule
from tfkd.training.seq2seq import Seq2SeqTrainer
from tfkd.training.soft_target import SoftTargetDistiller
from tfkd.teacher_cache import read_cache

log = logging.getLogger("tfkd")


class RunContext:
    """What stages share: the spec, the runner (stage directories) and loaded artefacts."""

    def __init__(self, spec, runner):
        self.spec = spec
        self.runner = runner
        self._corpora = {}
        self._tokenizers = None

    def corpus(self, split):
        if split not in self._corpora:
            try:
                self._corpora[split] = data_lib.read_split(self.spec.data, split)
            except data_lib.DataError as e:
                raise StageError(str(e)) from None
        return self._corpora[split]

    def tokenizers(self):
        """``(source_tokenizer, target_tokenizer)`` from the vocab stage's files."""
        if self._tokenizers is None:
            vocab_dir = self.runner.stage_dir("vocab")
            with open(os.path.join(vocab_dir, "tokenizers.json")) as f:
                settings = json.load(f)
            self._tokenizers = tuple(
                data_lib.make_tokenizer(os.path.join(vocab_dir, f"{side}.vocab"), **settings[side])
                for side in ("source", "target")
            )
        return self._tokenizers


def _data_config(spec):
    data = spec.data.model_dump(mode="json")
    for key in ("batch_tokens", "bucket_width", "shuffle_buffer", "valid_limit", "test_limit"):
        data.pop(key)
    return data


def _data_files(spec, splits):
    data = spec.data
    if data.source != "text":
        return []
    return [os.path.join(data.dir, f"{getattr(data, split + '_split')}.{lang}")
            for split in splits for lang in (data.src_lang, data.tgt_lang)]


# ----------------------------------------------------------------------------- vocab


class VocabStage(Stage):
    name = "vocab"

    def config(self, spec):
        data = spec.data
        return {
            "source_tokenizer": data.source_tokenizer.model_dump(),
            "target_tokenizer": data.target_tokenizer.model_dump(),
            "shared_vocab": data.shared_vocab,
            "train": _data_config(spec),
            "teacher": spec.teacher.model_dump() if spec.teacher else None,
        }

    def input_files(self, spec):
        return _data_files(spec, ["train"])

    def run(self, context, workdir):
        spec = context.spec
        corpus = context.corpus("train")
        sides = {"source": (spec.data.source_tokenizer, corpus.source),
                 "target": (spec.data.target_tokenizer, corpus.target)}
        if spec.data.shared_vocab:
            sentences = corpus.source + corpus.target
            sides = {side: (tok, sentences) for side, (tok, _) in sides.items()}
        sizes, settings = {}, {}
        for side, (tokenizer_spec, sentences) in sides.items():
            path = os.path.join(workdir, f"{side}.vocab")
            settings[side] = {"lowercase": tokenizer_spec.lowercase, "strip_accents": tokenizer_spec.strip_accents}
            if tokenizer_spec.kind == "teacher":
                from tfkd.models.teachers import teacher_tokenizer

                if spec.teacher is None:
                    raise StageError(f'vocab: data.{side}_tokenizer.kind is "teacher" but the spec has no teacher')
                tokenizer = teacher_tokenizer(spec.teacher.checkpoint)
                # the teacher's own normalisation, whatever the spec says
                settings[side] = {"lowercase": tokenizer.lowercase, "strip_accents": tokenizer.strip_accents}
                vocabulary = tokenizer.get_vocabulary()
                if tokenizer_spec.min_count:
                    vocabulary = data_lib.prune_vocabulary(tokenizer, sentences, tokenizer_spec.min_count)
                    log.info("vocab: %d of the teacher's %d tokens occur at least %d times on the %s side",
                             len(vocabulary), tokenizer.vocabulary_size(), tokenizer_spec.min_count, side)
                with open(path + ".tmp", "w", encoding="utf-8") as f:
                    f.write("\n".join(vocabulary) + "\n")
                os.replace(path + ".tmp", path)
            elif spec.data.shared_vocab and side == "target":
                with open(os.path.join(workdir, "source.vocab"), encoding="utf-8") as f:
                    shared = f.read()
                with open(path, "w", encoding="utf-8") as f:
                    f.write(shared)
            else:
                log.info("vocab: learning a %d-token WordPiece vocabulary for the %s side",
                         tokenizer_spec.vocab_size, side)
                data_lib.learn_vocabulary(sentences, tokenizer_spec, path)
            with open(path, encoding="utf-8") as f:
                sizes[side] = sum(1 for _ in f)
        with open(os.path.join(workdir, "tokenizers.json"), "w") as f:
            json.dump(settings, f)
        log.info("vocab: source %d tokens, target %d tokens", sizes["source"], sizes["target"])
        return {"source_vocab_size": sizes["source"], "target_vocab_size": sizes["target"]}


# ----------------------------------------------------------------------------- train


def build_student(spec, source_vocab_size, target_vocab_size, pad_id):
    """The student the spec names, from the registry."""
    student_cls = registry.lookup("student", spec.student.kind)
    config = spec.student_config()
    # layer references dump as {"kind": ..., **their kwargs}, the form the student takes
    kwargs = config.model_dump() if hasattr(config, "model_dump") else dict(config)
    return student_cls(
        source_vocab_size=source_vocab_size, target_vocab_size=target_vocab_size, pad_id=pad_id, **kwargs
    )


def load_student(context, train_stage="train"):
    """Rebuild the trained student from a train stage's config and weights."""
    train_dir = context.runner.stage_dir(train_stage)
    with open(os.path.join(train_dir, "student.json")) as f:
        student = keras.saving.deserialize_keras_object(json.load(f))
    dummy = {"source_ids": tf.ones([1, 2], tf.int32), "decoder_ids": tf.ones([1, 2], tf.int32)}
    student(dummy)
    student.load_weights(os.path.join(train_dir, "student.weights.h5"))
    return student


class TrainStage(Stage):
    """Trains the student: with the spec's ``distill`` method if it has one (stage ``train``),
    or plainly on the references (stage ``baseline``: same data, student, steps and seed)."""

    def __init__(self, name="train", distill=True):
        self.name = name
        self.distill = distill

    def _distills(self, spec):
        return self.distill and spec.distill is not None

    def dependencies(self, spec):
        return ("vocab", "teacher_cache") if self._distills(spec) else ("vocab",)

    def config(self, spec):
        return {
            "data": spec.data.model_dump(mode="json"),
            "student": spec.student.model_dump(mode="json"),
            "train": {k: v for k, v in spec.train.model_dump(mode="json").items()
                      if k not in ("log_every", "valid_bleu_sentences")},
            "distill": spec.distill.model_dump(mode="json") if self._distills(spec) else None,
            "imports": spec.imports,
        }

    def input_files(self, spec):
        return _data_files(spec, ["train", "valid"])

    def make_trainer(self, spec, student, pad_id):
        if self._distills(spec):
            return SoftTargetDistiller(student, alpha=spec.distill.alpha,
                                       label_smoothing=spec.train.label_smoothing, pad_id=pad_id)
        return Seq2SeqTrainer(student, label_smoothing=spec.train.label_smoothing, pad_id=pad_id)

    def soft_target_columns(self, context, tokenized):
        """The cached top-K targets of the kept training pairs, as ragged columns."""
        entries, manifest = read_cache(context.runner.stage_dir("teacher_cache"))
        ids, probs = [], []
        lengths = tokenized.target_ids.row_lengths().numpy() + 1
        for index, length in zip(tokenized.kept, lengths):
            if int(index) not in entries:
                raise StageError(f"train: the teacher cache has no entry for training pair {int(index) + 1}")
            cached_ids, cached_probs = entries[int(index)]
            if cached_ids.shape[0] != length:
                raise StageError(
                    f"train: the teacher cache has {cached_ids.shape[0]} positions for training pair "
                    f"{int(index) + 1}, the student's target has {length}; rerun teacher_cache"
                )
            ids.append(cached_ids)
            probs.append(cached_probs)
        log.info("train: soft targets for %d pairs from the cache (K=%d, T=%g)", len(ids), manifest["top_k"],
                 manifest["temperature"])
        return {"teacher_ids": tf.RaggedTensor.from_row_lengths(np.concatenate(ids), lengths),
                "teacher_probs": tf.RaggedTensor.from_row_lengths(np.concatenate(probs), lengths)}

    def run(self, context, workdir):
        spec = context.spec
        train = spec.train
        keras.utils.set_random_seed(train.seed)
        source_tokenizer, target_tokenizer = context.tokenizers()
        target_ids = data_lib.SpecialIds.of(target_tokenizer)
        max_tokens = spec.data.max_tokens

        train_tok = data_lib.tokenize_corpus(context.corpus("train"), source_tokenizer, target_tokenizer,
                                             max_tokens, "train")
        valid_corpus = context.corpus("valid")
        valid_tok = data_lib.tokenize_corpus(valid_corpus, source_tokenizer, target_tokenizer,
                                             max_tokens, "valid")
        if len(train_tok) == 0:
            raise StageError(f"{self.name}: no usable sentence pairs in {context.corpus('train').origin}")
        log.info("%s: %d pairs, valid: %d pairs", self.name, len(train_tok), len(valid_tok))

        strategy = make_strategy(train.strategy)
        keras.mixed_precision.set_global_policy(train.precision)
        batch = dict(batch_tokens=spec.data.batch_tokens, max_tokens=max_tokens,
                     bucket_width=spec.data.bucket_width)
        extra = self.soft_target_columns(context, train_tok) if self._distills(spec) else None
        train_ds = data_lib.seq2seq_dataset(train_tok, target_ids, shuffle=True, seed=train.seed,
                                            shuffle_buffer=spec.data.shuffle_buffer, repeat=True,
                                            extra=extra, **batch)
        valid_ds = data_lib.seq2seq_dataset(valid_tok, target_ids, **batch) if len(valid_tok) else None

        with strategy.scope():
            student = build_student(spec, source_tokenizer.vocabulary_size(),
                                    target_tokenizer.vocabulary_size(), target_ids.pad)
            trainer = self.make_trainer(spec, student, target_ids.pad)
            hidden_dim = getattr(student, "hidden_dim", 512)
            optimizer = keras.optimizers.Adam(
                InverseSqrtSchedule(train.learning_rate, hidden_dim, train.warmup_steps),
                beta_1=train.adam_beta_1, beta_2=train.adam_beta_2, epsilon=train.adam_epsilon,
                global_clipnorm=train.clip_norm,
            )
            trainer.compile(optimizer=optimizer)
            inputs, _ = next(iter(train_ds))
            trainer(inputs)
            optimizer.build(trainer.student.trainable_variables)

        log.info("%s: student %s with %s trainable parameters", self.name, type(student).__name__,
                 f"{sum(int(np.prod(v.shape)) for v in student.trainable_variables):,}")
        epochs = math.ceil(train.steps / train.checkpoint_every)
        checkpoint = StageCheckpoint(workdir)
        initial_epoch = checkpoint.restore(trainer)
        if initial_epoch:
            log.info("%s: resumed from checkpoint at step %d", self.name, int(optimizer.iterations.numpy()))
        translator = None
        if valid_ds is not None and train.valid_bleu_sentences:
            n = min(train.valid_bleu_sentences, len(valid_corpus))
            translator = Translator(student, source_tokenizer, target_tokenizer,
                                    spec.decode.model_copy(update={"algorithm": "greedy"}), max_tokens)
            bleu_data = (valid_corpus.source[:n], valid_corpus.target[:n], spec.evaluate)
        monitor = TrainingMonitor(os.path.join(workdir, "tensorboard"), train.log_every,
                                  translator=translator, bleu_data=bleu_data if translator else None)
        if initial_epoch < epochs:
            trainer.fit(
                train_ds,
                steps_per_epoch=train.checkpoint_every,
                epochs=epochs,
                initial_epoch=initial_epoch,
                validation_data=valid_ds,
                shuffle=False,
                callbacks=[monitor, checkpoint],
                verbose=2 if os.environ.get("TFKD_QUIET_PROGRESS") else 1,
            )
        if checkpoint.failure:
            raise StageError(checkpoint.failure)

        with open(os.path.join(workdir, "student.json"), "w") as f:
            json.dump(keras.saving.serialize_keras_object(student), f, indent=1)
        student.save_weights(os.path.join(workdir, "student.weights.h5"))
        checkpoint.cleanup()
        return {"steps": int(optimizer.iterations.numpy()), **monitor.summary()}


# ----------------------------------------------------------------------------- evaluate


class EvaluateStage(Stage):
    """Translates the evaluation splits with a trained student and scores them with sacreBLEU."""

    def __init__(self, name="evaluate", train_stage="train"):
        self.name = name
        self.depends = (train_stage,)
        self.train_stage = train_stage

    def config(self, spec):
        return {
            "decode": spec.decode.model_dump(mode="json"),
            "evaluate": spec.evaluate.model_dump(mode="json"),
            "data": _data_config(spec)
            | {"valid_limit": spec.data.valid_limit, "test_limit": spec.data.test_limit},
        }

    def input_files(self, spec):
        return _data_files(spec, spec.evaluate.splits)

    def run(self, context, workdir):
        spec = context.spec
        translator = make_translator(context, self.train_stage)
        results = {}
        for split in spec.evaluate.splits:
            corpus = context.corpus(split)
            log.info("%s: translating %d %s sentences (%s, beam %d)", self.name, len(corpus), split,
                     spec.decode.algorithm, spec.decode.beam_size)
            start = time.time()
            hypotheses, _ = translator.translate_all(corpus.source, progress=True)
            seconds = time.time() - start
            with open(os.path.join(workdir, f"{split}.hyp"), "w", encoding="utf-8") as f:
                f.write("\n".join(hypotheses) + "\n")
            bleu, signature = corpus_bleu(hypotheses, corpus.target, spec.evaluate.lowercase,
                                          spec.evaluate.tokenize)
            log.info("%s: %s BLEU = %.2f (%s) [%.1f sentences/s]", self.name, split, bleu.score,
                     signature, len(corpus) / seconds)
            results[split] = {"bleu": round(bleu.score, 2), "signature": signature,
                              "sentences": len(corpus), "sentences_per_second": round(len(corpus) / seconds, 1)}
        with open(os.path.join(workdir, "scores.json"), "w") as f:
            json.dump(results, f, indent=2)
        return results


# ----------------------------------------------------------------------------- export


def make_translator(context, train_stage="train"):
    source_tokenizer, target_tokenizer = context.tokenizers()
    return Translator(load_student(context, train_stage), source_tokenizer, target_tokenizer,
                      context.spec.decode, context.spec.data.max_tokens)


class ExportStage(Stage):
    """``<run>/export/<model_name>/<version>/``: a SavedModel that takes raw text."""

    name = "export"
    depends = ("train",)

    def config(self, spec):
        return {"decode": spec.decode.model_dump(mode="json"), "export": spec.export.model_dump(mode="json"),
                "max_tokens": spec.data.max_tokens}

    def run(self, context, workdir):
        from tfkd.export import directory_size, export_saved_model

        spec = context.spec
        start = time.time()
        path = export_saved_model(make_translator(context), workdir, spec.export.model_name or spec.name,
                                  spec.export.version)
        size = directory_size(path)
        log.info("export: %s (%.1f MB) in %.1fs", path, size / 1e6, time.time() - start)
        return {"path": os.path.relpath(path, workdir), "bytes": size}


def open_run(run_dir):
    """``(spec, runner, context)`` of a run directory, from the resolved spec it holds."""
    from tfkd.runner import Runner
    from tfkd.spec import SpecError, load_spec

    spec_path = os.path.join(run_dir, "spec.yaml")
    if not os.path.exists(spec_path):
        raise SpecError(f"{run_dir}: not a tfkd run directory (no spec.yaml)")
    origin = {}
    if os.path.exists(os.path.join(run_dir, "origin.json")):
        with open(os.path.join(run_dir, "origin.json")) as f:
            origin = json.load(f)
    spec = load_spec(spec_path, import_dir=origin.get("spec_dir"))
    # the run directory may have moved since: use where it is now
    spec = spec.model_copy(update={"run_dir": os.path.dirname(os.path.abspath(run_dir)),
                                   "name": os.path.basename(os.path.abspath(run_dir))})
    runner = Runner(spec, default_stages())
    return spec, runner, RunContext(spec, runner)


def default_stages():
    from tfkd.teacher_stages import TeacherCacheStage, TeacherFinetuneStage

    return [VocabStage(), TeacherFinetuneStage(), TeacherCacheStage(), TrainStage("baseline", distill=False),
            EvaluateStage("baseline_evaluate", "baseline"), TrainStage(), EvaluateStage(), ExportStage()]


__all__ = ["RunContext", "VocabStage", "TrainStage", "EvaluateStage", "ExportStage", "build_student",
           "load_student", "make_translator", "default_stages"]
