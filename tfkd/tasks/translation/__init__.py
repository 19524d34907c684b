"""``task: translation``: aligned text (or TFDS) in, a seq2seq student, sacreBLEU, an export
that takes raw source text and returns translations and scores."""

import logging
import os
from typing import Literal

import pydantic
from pydantic import Field, PositiveInt

from tfkd import registry
from tfkd.errors import StageError
from tfkd.spec import LocalPath, Strict, TokenizerSpec
from tfkd.tasks.base import AlignedPairs, DecodeSettings, Pretrainable, Task
from tfkd.tasks.translation.sequence_kd_plan import TARGETS_STAGE

log = logging.getLogger("tfkd")

# the export's signature of teacher-forced scores (Translator._score)
SCORE_SIGNATURE = "score"
# the export's signature of each line's source token count (Translator._source_length)
LENGTH_SIGNATURE = "source_length"


class TranslationData(Strict):
    source: Literal["text", "tfds"] = "text"
    dir: LocalPath | None = None
    tfds: str | None = None
    data_dir: LocalPath | None = None
    src_lang: str
    tgt_lang: str
    train_split: str = "train"
    valid_split: str = "valid"
    test_split: str = "test"
    train_limit: PositiveInt | None = None
    valid_limit: PositiveInt | None = None
    test_limit: PositiveInt | None = None
    max_tokens: PositiveInt = 128
    batch_tokens: PositiveInt = 4096
    bucket_width: PositiveInt = 8
    shuffle_buffer: PositiveInt = 100000
    source_tokenizer: TokenizerSpec = TokenizerSpec()
    target_tokenizer: TokenizerSpec = TokenizerSpec()
    shared_vocab: bool = False
    # shown when a data file is missing: how to prepare the corpus
    prepare: str | None = None

    @pydantic.model_validator(mode="after")
    def _source_fields(self):
        if self.source == "text" and not self.dir:
            raise ValueError('source "text" needs "dir" (a folder with {split}.{lang} files)')
        if self.source == "tfds" and not self.tfds:
            raise ValueError('source "tfds" needs "tfds" (a TFDS name such as "wmt14_translate/de-en")')
        if self.shared_vocab and self.source_tokenizer != self.target_tokenizer:
            raise ValueError("shared_vocab needs source_tokenizer and target_tokenizer to be equal")
        return self


class TranslationDecode(DecodeSettings):
    algorithm: str = "beam"  # a registered decoder: greedy, beam, mask_predict
    beam_size: PositiveInt = 4  # beam
    length_penalty: float = Field(0.6, ge=0)  # beam
    # beam: a sentence is done with beam_size finished hypotheses (fairseq's rule), or when no
    # alive one can beat them at any length up to the maximum (exact)
    early_stopping: Literal["beam_size", "exact"] = "beam_size"
    length_candidates: PositiveInt = 4  # mask_predict: target lengths decoded per sentence (B)
    iterations: PositiveInt = 10  # mask_predict: most mask-and-predict passes (T)
    max_length_a: float = Field(1.2, ge=0)
    max_length_b: int = Field(10, ge=1)
    batch_size: PositiveInt = 64
    # XLA-compiled decoding (evaluation, tfkd translate and the export), sources padded to a
    # multiple of data.bucket_width so each batch size compiles one program per bucket
    jit_compile: bool = False
    # sources longer than data.max_tokens: cut to it (as the student trained), with one warning
    # counting them; or read whole up to the student's positional range (student.max_length)
    long_inputs: Literal["cut", "whole"] = "cut"

    def key(self):
        """``long_inputs`` counts only when it is not ``cut`` and ``early_stopping`` only when
        it is not ``exact`` (the rule beam search had before it was a setting), so the evaluate
        stages of runs made before these settings stay done when they decode as those did."""
        key = super().key()
        if key.get("long_inputs") == "cut":
            del key["long_inputs"]
        if key.get("early_stopping") == "exact":  # the rule of those runs
            del key["early_stopping"]
        return key

    @pydantic.field_validator("algorithm")
    @classmethod
    def _registered(cls, name):
        return registry.check_name("decoder", name)  # ValueError listing the choices


class TranslationEvaluate(Strict):
    splits: list[Literal["valid", "test"]] = Field(["test"], min_length=1)
    lowercase: bool = False
    tokenize: Literal["13a", "intl", "none", "char"] = "13a"


class TranslationTask(Task, AlignedPairs, Pretrainable):
    """Sentence pairs ``{dir}/{split}.{src_lang}`` / ``.{tgt_lang}`` (or TFDS), a source and a
    target WordPiece vocabulary, a seq2seq student (``call({"source_ids", "decoder_ids"}) ->
    logits`` plus ``encode``/``decode`` for the decoders), label-smoothed cross-entropy over
    target tokens, sacreBLEU."""

    name = "translation"
    data_schema = TranslationData
    decode_schema = TranslationDecode
    evaluate_schema = TranslationEvaluate
    student_arguments = ("source_vocab_size", "target_vocab_size", "pad_id")
    stage_names = (TARGETS_STAGE,)
    # what LightPAFF pre-trains its students by (tfkd.methods.two_stage.mass): MASS
    pretraining_objective = "masked_seq2seq"

    def check(self, spec):
        data = spec.data
        problems = []
        for side in ("source", "target"):
            if getattr(data, f"{side}_tokenizer").kind == "teacher" and spec.teacher is None:
                problems.append((("data", f"{side}_tokenizer", "kind"), 'is "teacher" but the spec has no teacher'))
        return problems

    # ------------------------------------------------------------------ keys

    def data_files(self, spec, splits):
        data = spec.data
        if data.source != "text":
            return []
        return [
            os.path.join(data.dir, f"{getattr(data, split + '_split')}.{lang}")
            for split in splits
            for lang in (data.src_lang, data.tgt_lang)
        ]

    def data_key(self, spec, splits):
        data = spec.data
        key = {"source": data.source, "languages": [data.src_lang, data.tgt_lang], "max_tokens": data.max_tokens}
        for split in splits:
            entry = {"limit": getattr(data, f"{split}_limit")}
            if data.source == "tfds":  # local text files are keyed by their content instead
                entry.update(
                    tfds=data.tfds,
                    data_dir=os.path.abspath(data.data_dir) if data.data_dir else None,
                    split=getattr(data, f"{split}_split"),
                )
            key[split] = entry
        return key

    def batching_key(self, spec):
        data = spec.data
        return {k: getattr(data, k) for k in ("batch_tokens", "bucket_width", "shuffle_buffer")}

    def vocab_config(self, spec):
        data = spec.data
        uses_teacher = "teacher" in (data.source_tokenizer.kind, data.target_tokenizer.kind)
        return {
            "source_tokenizer": data.source_tokenizer.key(),
            "target_tokenizer": data.target_tokenizer.key(),
            "shared_vocab": data.shared_vocab,
            "train": {k: v for k, v in self.data_key(spec, ["train"]).items() if k != "max_tokens"},
            "teacher": spec.teacher.checkpoint if uses_teacher else None,
        }

    # ------------------------------------------------------------------ data

    def corpus(self, context, split):
        """The :class:`~tfkd.tasks.translation.data.ParallelCorpus` of ``split``."""
        from tfkd.tasks.translation.data import read_split

        return context.memo(("translation", "corpus", split), lambda: read_split(context.spec.data, split))

    def tokenized(self, context, split, stage_name):
        """The split tokenized with the run's vocabularies (empty and over-long pairs dropped);
        the training split of a stage with ``distill.targets: teacher_beam`` pairs the sources
        with the teacher's translations (:mod:`.sequence_kd`)."""
        from tfkd.tasks.translation import sequence_kd
        from tfkd.tasks.translation.data import tokenize_corpus

        teacher = split == "train" and sequence_kd.uses_teacher_targets(context.spec)

        def make():
            tokenizers = context.tokenizers()
            corpus = sequence_kd.teacher_corpus(self, context) if teacher else self.corpus(context, split)
            return tokenize_corpus(
                corpus, tokenizers.source, tokenizers.target, context.spec.data.max_tokens, f"{stage_name} ({split})"
            )

        key = ("translation", "tokenized", split)
        return context.memo(key + sequence_kd.targets_identity(context) if teacher else key, make)

    def tokenized_with(self, context, split, source_tokenizer, target_tokenizer, max_tokens, stage_name):
        from tfkd.tasks.translation.data import tokenize_corpus

        return tokenize_corpus(self.corpus(context, split), source_tokenizer, target_tokenizer, max_tokens, stage_name)

    def extend_plan(self, context, plan):
        from tfkd.tasks.translation.sequence_kd_plan import extend_plan

        extend_plan(context, plan)

    def check_decoded_targets(self, spec, located):
        from tfkd.tasks.translation.sequence_kd_plan import check_decoded_targets

        check_decoded_targets(spec, located)

    def example_ids(self, context, split, stage_name):
        return self.tokenized(context, split, stage_name).kept

    def build_vocabulary(self, context, workdir):
        from tfkd.tasks.translation.vocab import build_vocabulary

        return build_vocabulary(self, context, workdir)

    def load_tokenizers(self, vocab_dir):
        from tfkd.tasks.translation.vocab import load_tokenizers

        return load_tokenizers(vocab_dir)

    def _dataset(self, context, split, stage_name, training, columns=None):
        from tfkd.data import SpecialIds
        from tfkd.tasks.translation.data import seq2seq_dataset
        from tfkd.xla import resolve_jit_compile

        spec = context.spec
        tokenized = self.tokenized(context, split, stage_name)
        if len(tokenized) == 0:
            if training:
                raise StageError(f"{stage_name}: no usable sentence pairs in {self.corpus(context, split).origin}")
            return None
        return seq2seq_dataset(
            tokenized,
            SpecialIds.of(context.tokenizers().target),
            batch_tokens=spec.data.batch_tokens,
            max_tokens=spec.data.max_tokens,
            bucket_width=spec.data.bucket_width,
            shuffle=training,
            seed=spec.train.seed if training else None,
            shuffle_buffer=spec.data.shuffle_buffer,
            repeat=training,
            columns=columns,
            pad_to_bucket=resolve_jit_compile(spec.train.jit_compile),
        )

    def train_dataset(self, context, stage_name, columns=None):
        return self._dataset(context, "train", stage_name, training=True, columns=columns)

    def valid_dataset(self, context, stage_name):
        return self._dataset(context, "valid", stage_name, training=False)

    def describe_data(self, context, stage_name):
        from tfkd.tasks.translation.sequence_kd import uses_teacher_targets

        targets = " (targets: the teacher's translations)" if uses_teacher_targets(context.spec) else ""
        return (
            f"{len(self.tokenized(context, 'train', stage_name))} training pairs{targets}, "
            f"{len(self.tokenized(context, 'valid', stage_name))} validation pairs"
        )

    # ------------------------------------------------------------------ student

    def build_student(self, spec, tokenizers):
        from tfkd.data import MASK, SpecialIds
        from tfkd.models.abilities import TargetMaskToken

        student_cls = registry.lookup("student", spec.student.kind)
        config = spec.student_config()
        # layer references dump as {"kind": ..., **their kwargs}, the form the student takes
        kwargs = config.model_dump() if hasattr(config, "model_dump") else dict(config)
        if issubclass(student_cls, TargetMaskToken):
            kwargs["mask_id"] = tokenizers.target.token_to_id(MASK)
        return student_cls(
            source_vocab_size=tokenizers.source.vocabulary_size(),
            target_vocab_size=tokenizers.target.vocabulary_size(),
            pad_id=SpecialIds.of(tokenizers.target).pad,
            **kwargs,
        )

    def build_teacher(self, spec, tokenizers, backbone):
        """The teacher around a pretrained seq2seq ``backbone``: the model itself (MASS
        pre-trains the whole encoder-decoder, so fine-tuning keeps every weight)."""
        sizes = (backbone.source_vocab_size, backbone.target_vocab_size)
        wanted = (tokenizers.source.vocabulary_size(), tokenizers.target.vocabulary_size())
        if sizes != wanted:
            raise StageError(
                f"the teacher has vocabularies of {sizes[0]} and {sizes[1]} tokens but the run's have "
                f"{wanted[0]} and {wanted[1]}"
            )
        return backbone

    def label_weights(self, student, labels):
        from keras import ops

        return ops.cast(ops.not_equal(labels, student.pad_id), "float32")

    def student_inputs(self, tokenizers):
        import tensorflow as tf

        return {"source_ids": tf.ones([1, 2], tf.int32), "decoder_ids": tf.ones([1, 2], tf.int32)}

    def supervised_terms(self, student, data, training, label_smoothing):
        import keras
        from keras import ops

        from tfkd.training.losses import label_smoothed_cross_entropy
        from tfkd.training.trainer import LossTerm

        inputs, target_ids, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = student(inputs, training=training)
        mask = ops.cast(ops.not_equal(target_ids, student.pad_id), "float32")
        tokens = ops.sum(mask)
        xe, nll = label_smoothed_cross_entropy(target_ids, logits, label_smoothing)
        terms = {"xe": LossTerm(ops.sum(xe * mask), tokens), "nll": LossTerm(ops.sum(nll * mask), tokens)}
        return logits, terms, tokens

    # ------------------------------------------------------------------ prediction and metric

    def translator(self, context, student, decode=None):
        from tfkd.models.abilities import PositionalRange
        from tfkd.tasks.translation.inference import Translator

        tokenizers = context.tokenizers()
        decode = decode or context.spec.decode
        max_tokens, limit = context.spec.data.max_tokens, "data.max_tokens"
        if decode.long_inputs == "whole" and isinstance(student, PositionalRange):
            max_tokens, limit = student.max_length, "the student's positional range, student.max_length"
        return Translator(
            student,
            tokenizers.source,
            tokenizers.target,
            decode,
            max_tokens,
            context.spec.data.bucket_width,
            limit=limit,
        )

    def valid_metric(self, context, student):
        spec = context.spec
        corpus = self.corpus(context, "valid")
        n = min(spec.train.valid_metric_examples, len(corpus))
        if not n:
            return None
        from tfkd.tasks.translation.metrics import corpus_bleu

        # beam search's cheap counterpart is greedy search; other decoders run as the spec says
        quick = {"algorithm": "greedy"} if spec.decode.algorithm == "beam" else {}
        translator = self.translator(context, student, spec.decode.model_copy(update=quick))
        sources, references = corpus.source[:n], corpus.target[:n]

        def greedy_bleu():
            hypotheses, _ = translator.translate_all(sources)
            return {
                "bleu": corpus_bleu(hypotheses, references, spec.evaluate.lowercase, spec.evaluate.tokenize)[0].score
            }

        return greedy_bleu

    def evaluate(self, context, student, split, workdir):
        import time

        from tfkd.tasks.translation.metrics import corpus_bleu, corpus_chrf

        spec = context.spec
        corpus = self.corpus(context, split)
        translator = self.translator(context, student)
        decode = spec.decode
        settings = {
            "beam": f"beam {decode.beam_size}",
            "mask_predict": f"{decode.length_candidates} lengths, {decode.iterations} iterations",
        }
        log.info(
            "translating %d %s sentences (%s)",
            len(corpus),
            split,
            f"{decode.algorithm}, {settings[decode.algorithm]}" if decode.algorithm in settings else decode.algorithm,
        )
        start = time.time()
        # a progress bar, unless logs are wanted without (TFKD_QUIET_PROGRESS, as for fit)
        hypotheses, _ = translator.translate_all(corpus.source, progress=not os.environ.get("TFKD_QUIET_PROGRESS"))
        seconds = max(time.time() - start, 1e-9)
        with open(os.path.join(workdir, f"{split}.hyp"), "w", encoding="utf-8") as f:
            f.write("\n".join(hypotheses) + "\n")
        bleu, signature = corpus_bleu(hypotheses, corpus.target, spec.evaluate.lowercase, spec.evaluate.tokenize)
        chrf, chrf_signature = corpus_chrf(hypotheses, corpus.target, spec.evaluate.lowercase)
        log.info(
            "%s BLEU = %.2f (%s), chrF = %.2f [%.1f sentences/s]",
            split,
            bleu.score,
            signature,
            chrf.score,
            len(corpus) / seconds,
        )
        return {
            "metric": "BLEU",
            "score": round(bleu.score, 2),
            "bleu": round(bleu.score, 2),
            "signature": signature,
            "chrf": {"score": round(chrf.score, 2), "signature": chrf_signature},
            "sentences": len(corpus),
            "sentences_per_second": round(len(corpus) / seconds, 1),
        }

    def export(self, context, student, path):
        """``serving_default``: ``source`` (``tf.string [None]``) -> ``translations``
        (``tf.string [None]``) and ``scores`` (``float32 [None]``); ``source_length``:
        ``source`` -> ``source_tokens`` (``int32 [None]``), each line's source tokens before the
        graph keeps its first ``data.max_tokens``. An autoregressive student
        also gets ``score``: ``source`` and ``target`` -> ``target_ids``, ``logits`` and
        ``log_likelihood``, its teacher-forced distributions over the target vocabulary
        (:meth:`~tfkd.tasks.translation.inference.Translator._score`), whose words
        ``target_vocabulary_sha256`` in ``tfkd.json`` identifies."""
        from tfkd.data import vocabulary_sha256
        from tfkd.exporters.text_saved_model import write_text_saved_model
        from tfkd.models.abilities import ParallelDecoding

        translator = self.translator(context, student)
        endpoints = {"serving_default": translator._translate, LENGTH_SIGNATURE: translator._source_length}
        scored = not isinstance(student, ParallelDecoding)
        if scored:
            endpoints[SCORE_SIGNATURE] = translator._score
        write_text_saved_model(
            path,
            endpoints,
            {
                "task": self.name,
                "input": "source",
                "output": "translations",
                "batch_size": context.spec.decode.batch_size,
                # how the run scored BLEU: tfkd translate --reference scores the export alike
                "evaluate": context.spec.evaluate.model_dump(include={"lowercase", "tokenize"}),
                "target_vocabulary_sha256": vocabulary_sha256(translator.target_tokenizer),
                "signatures": {"score": ["source", "target"]} if scored else {},
                # tfkd translate on the export warns of the lines it reads cut, as on the run
                "long_inputs": {
                    "signature": LENGTH_SIGNATURE,
                    "output": "source_tokens",
                    "max_tokens": translator.max_tokens,
                    "setting": translator.limit,
                },
            },
            tokenizers=(translator.source_tokenizer, translator.target_tokenizer),
            max_input_chars=context.spec.export.max_input_chars,
            endpoint_inputs={SCORE_SIGNATURE: ("source", "target")},
            # an XLA-compiled decoder: TF Serving compiles every bucket's program as it loads
            warmup_lines=translator.bucket_lines() if translator.jit_compile else (),
        )

    def paired_test(self, context, split, baseline_dirs, candidate_dirs):
        """BLEU and chrF: sentence-cluster bootstrap and seed-level test (:mod:`tfkd.significance`)."""
        from tfkd.tasks.translation.metrics import paired_bleu_chrf

        evaluate = context.spec.evaluate
        references = self.corpus(context, split).target
        return paired_bleu_chrf(references, baseline_dirs, candidate_dirs, split, evaluate.lowercase, evaluate.tokenize)

    def score_lines(self, evaluate, predictions, references):
        from tfkd.tasks.translation.metrics import corpus_bleu

        # the spec's section, or its settings as an export records them (a dict)
        if evaluate is None or isinstance(evaluate, dict):
            evaluate = TranslationEvaluate.model_validate(evaluate or {})
        bleu, signature = corpus_bleu(predictions, references, evaluate.lowercase, evaluate.tokenize)
        return f"{bleu.format()} {signature}"  # sacreBLEU's own line

    def predictor(self, context, student):
        translator = self.translator(context, student)

        def predict(lines):
            return translator.translate_all(lines, progress=True)[0]

        return predict

    def nbest_predictor(self, context, student, nbest):
        from tfkd.tasks.translation.inference import nbest_in_batches

        translator = self.translator(context, student)
        translate = translator.nbest_function(nbest)

        def predict(lines):
            translator.warn_of_cut_inputs(lines)
            return nbest_in_batches(translate, lines, translator.batch_size, progress=True)

        return predict

    def report(self, context, students, out_dir):
        """BLEU by source length per student and the sentences where the student and the
        baseline differ most (:mod:`.report`)."""
        from tfkd.tasks.translation.report import translation_report

        return translation_report(self, context, students, out_dir)


registry.register("task", "translation")(TranslationTask())
registry.set_default("task", "translation")  # what a spec without task runs
