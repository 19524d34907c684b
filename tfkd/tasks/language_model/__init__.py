"""``task: language_model``: text (files or TFDS) in, a causal language model (GPT-2 style),
perplexity per token and per word, an export that takes raw text and returns per-token
log-probabilities and a continuation."""

import json
import logging
import math
import os
from typing import Literal

import numpy as np
import pydantic
from pydantic import Field, PositiveInt

from tfkd import registry
from tfkd.errors import StageError
from tfkd.spec import LocalPath, Seed, Strict
from tfkd.tasks.base import ContinuesText, DecodeSettings, Pretrainable, Task, TextBatches

log = logging.getLogger("tfkd")


class LanguageModelTokenizerSpec(Strict):
    # bpe: a byte-level BPE learned from the training split (and extra_text); teacher: the
    # teacher checkpoint's (a keras-hub GPT-2 preset such as gpt2_medium_en)
    kind: Literal["bpe", "teacher"] = "bpe"
    vocab_size: int = Field(8000, ge=257)
    min_frequency: PositiveInt = 2
    # more text the BPE is learned from (files or "tfds:NAME[:SPLIT]")
    extra_text: list[LocalPath] = []


class LanguageModelData(Strict):
    source: Literal["text", "tfds"] = "text"
    dir: LocalPath | None = None  # a folder with the text files
    train_file: str = "train.txt"
    valid_file: str = "valid.txt"
    test_file: str = "test.txt"
    tfds: str | None = None
    data_dir: LocalPath | None = None
    train_split: str = "train"
    valid_split: str = "validation"
    test_split: str = "test"
    text_feature: str = "text"
    # the first this many lines of a split
    train_limit: PositiveInt | None = None
    valid_limit: PositiveInt | None = None
    test_limit: PositiveInt | None = None
    block_size: int = Field(128, ge=2)  # tokens per example (a training block and an evaluation window)
    batch_size: PositiveInt = 16  # blocks per batch
    shuffle_buffer: PositiveInt = 100000
    # "wikitext": the lines are detokenized before the tokenizer reads them, as GPT-2's paper
    # evaluated WikiText (perplexity per word still counts the published, tokenized words)
    detokenize: Literal["none", "wikitext"] = "none"
    tokenizer: LanguageModelTokenizerSpec = LanguageModelTokenizerSpec()

    @pydantic.model_validator(mode="after")
    def _source_fields(self):
        if self.source == "text" and not self.dir:
            raise ValueError(
                'source "text" needs "dir" (a folder with the text files train_file, valid_file, test_file)'
            )
        if self.source == "tfds" and not self.tfds:
            raise ValueError('source "tfds" needs "tfds" (a TFDS name such as "wikitext/wikitext-2-v1")')
        return self


class LanguageModelDecode(DecodeSettings):
    """How continuations are generated (exports, ``tfkd generate``, ``tfkd predict``)."""

    sampler: Literal["greedy", "top_k", "top_p"] = "greedy"
    top_k: PositiveInt = 50
    top_p: float = Field(0.9, gt=0, le=1)
    temperature: float = Field(1.0, gt=0)
    seed: Seed | None = None
    max_new_tokens: PositiveInt = 32
    batch_size: PositiveInt = 16


class LanguageModelEvaluate(Strict):
    splits: list[Literal["valid", "test"]] = Field(["valid", "test"], min_length=1)


class LanguageModelTask(Task, Pretrainable, TextBatches, ContinuesText):
    """Lines of text from ``{dir}/{train,valid,test}_file`` or TFDS, a byte-level BPE
    vocabulary, a causal LM student (``call({"token_ids", "padding_mask"}) -> logits [B, T,
    V]``, a ``backbone`` and ``generate_step``: :class:`~tfkd.models.gpt2_lm.GPT2LM`), token
    cross-entropy over every position, perplexity (see :mod:`tfkd.tasks.language_model.data`)."""

    name = "language_model"
    data_schema = LanguageModelData
    decode_schema = LanguageModelDecode
    evaluate_schema = LanguageModelEvaluate
    student_arguments = ("vocabulary_size",)
    # what pre-training on raw text means for its students (two_stage's pre-training objective)
    pretraining_objective = "causal_lm"

    def check(self, spec):
        problems = []
        if spec.data.tokenizer.kind == "teacher" and (spec.teacher is None or not spec.teacher.checkpoint):
            problems.append((("data", "tokenizer", "kind"), 'is "teacher" but the spec has no teacher.checkpoint'))
        try:
            config = spec.student_config()
        except ValueError:
            config = None
        longest = getattr(config, "max_sequence_length", None)
        if isinstance(longest, int) and longest < spec.data.block_size:
            problems.append(
                (
                    ("student", "max_sequence_length"),
                    f"is {longest} but data.block_size is {spec.data.block_size}; the student must read "
                    "blocks of data.block_size tokens",
                )
            )
        if isinstance(longest, int) and longest <= spec.decode.max_new_tokens + 1:
            problems.append(
                (
                    ("decode", "max_new_tokens"),
                    f"is {spec.decode.max_new_tokens} but the student reads at most {longest} tokens (prompt included)",
                )
            )
        return problems

    # ------------------------------------------------------------------ keys

    def data_files(self, spec, splits):
        data = spec.data
        files = [] if data.source != "text" else [os.path.join(data.dir, getattr(data, f"{s}_file")) for s in splits]
        if "train" in splits:
            files += [e for e in data.tokenizer.extra_text if not e.startswith("tfds:")]
        return files

    def data_key(self, spec, splits):
        data = spec.data
        key = {"source": data.source, "block_size": data.block_size}
        for split in splits:
            entry = {"limit": getattr(data, f"{split}_limit")}
            if data.source == "tfds":
                entry.update(
                    tfds=data.tfds,
                    data_dir=os.path.abspath(data.data_dir) if data.data_dir else None,
                    split=getattr(data, f"{split}_split"),
                    feature=data.text_feature,
                )
            key[split] = entry
        if data.detokenize != "none":  # keyed only when set: runs made before stay done
            key["detokenize"] = data.detokenize
        return key

    def batching_key(self, spec):
        return {k: getattr(spec.data, k) for k in ("batch_size", "shuffle_buffer")}

    def vocab_config(self, spec):
        tokenizer = spec.data.tokenizer
        return {
            "tokenizer": tokenizer.model_dump(mode="json"),
            "train": {k: v for k, v in self.data_key(spec, ["train"]).items() if k != "block_size"},
            "teacher": spec.teacher.checkpoint if tokenizer.kind == "teacher" else None,
        }

    # ------------------------------------------------------------------ data

    def text(self, context, split):
        """The :class:`~tfkd.tasks.language_model.data.LanguageModelText` of ``split``."""
        from tfkd.tasks.language_model.data import read_split

        return context.memo(("language_model", "text", split), lambda: read_split(context.spec.data, split))

    def end_id(self, context):
        from tfkd.tasks.language_model.vocab import END_OF_TEXT

        return context.tokenizers().text.token_to_id(END_OF_TEXT)

    def stream(self, context, lines, key):
        """The token stream of ``lines`` (memoised under ``key``)."""
        from tfkd.tasks.language_model.data import token_stream

        return context.memo(
            ("language_model", "stream", key),
            lambda: token_stream(context.tokenizers().text, lines, self.end_id(context)),
        )

    def blocks(self, context, split):
        from tfkd.tasks.language_model.data import blocks

        return context.memo(
            ("language_model", "blocks", split),
            lambda: blocks(self.stream(context, self.text(context, split).lines, split), context.spec.data.block_size),
        )

    def text_batches(self, context, lines, key, training, seed=None, batch_size=None, block_size=None):
        """Batches of the task's kind from any text (``lines``: a list of strings, one stream
        memoised under ``key``): what pre-training on raw text trains on, in blocks of
        ``block_size`` tokens, ``batch_size`` a batch (default: the ``data`` section's).
        Returns ``(dataset, blocks, tokens)``."""
        from tfkd.tasks.language_model.data import block_dataset, blocks

        data = context.spec.data
        stream = self.stream(context, lines, key)
        inputs, labels = blocks(stream, block_size or data.block_size)
        return (
            block_dataset(
                inputs, labels, batch_size or data.batch_size, training, seed=seed, shuffle_buffer=data.shuffle_buffer
            ),
            len(inputs),
            len(stream) - 1,
        )

    def example_ids(self, context, split, stage_name):
        import numpy as np

        return np.arange(len(self.blocks(context, split)[0]), dtype=np.int64)

    def build_vocabulary(self, context, workdir):
        from tfkd.tasks.language_model.vocab import build_vocabulary

        return build_vocabulary(self, context, workdir)

    def load_tokenizers(self, vocab_dir):
        """``LanguageModelTokenizers(text)``: the run's keras-hub GPT2Tokenizer."""
        from tfkd.tasks.language_model.vocab import load_tokenizers

        return load_tokenizers(vocab_dir)

    def train_dataset(self, context, stage_name, columns=None):
        """Shuffled, repeated batches of blocks ``({"token_ids", "padding_mask", **columns},
        labels)`` (labels -1 past the end of the text)."""
        from tfkd.tasks.language_model.data import block_dataset

        spec = context.spec
        inputs, labels = self.blocks(context, "train")
        return block_dataset(
            inputs,
            labels,
            spec.data.batch_size,
            training=True,
            seed=spec.train.seed,
            shuffle_buffer=spec.data.shuffle_buffer,
            columns=columns,
        )

    def valid_dataset(self, context, stage_name):
        from tfkd.tasks.language_model.data import block_dataset

        inputs, labels = self.blocks(context, "valid")
        return block_dataset(inputs, labels, context.spec.data.batch_size, training=False)

    def describe_data(self, context, stage_name):
        def described(split):
            text = self.text(context, split)
            inputs, labels = self.blocks(context, split)
            return (
                f"{split}: {len(text.lines):,} lines, {text.words:,} words, {int((labels >= 0).sum()):,} tokens "
                f"in {len(inputs):,} blocks"
            )

        return "; ".join(described(s) for s in ("train", "valid"))

    # ------------------------------------------------------------------ student

    def build_student(self, spec, tokenizers):
        student_cls = registry.lookup("student", spec.student.kind)
        config = spec.student_config()
        kwargs = config.model_dump() if hasattr(config, "model_dump") else dict(config)
        return student_cls(vocabulary_size=tokenizers.text.vocabulary_size(), **kwargs)

    def build_teacher(self, spec, tokenizers, backbone):
        """A :class:`~tfkd.models.gpt2_lm.GPT2LM` around a pretrained GPT-2 ``backbone``."""
        from tfkd.models.gpt2_lm import GPT2LM

        if backbone.vocabulary_size != tokenizers.text.vocabulary_size():
            raise StageError(
                f"the teacher's backbone has {backbone.vocabulary_size} tokens but the run's vocabulary "
                f"has {tokenizers.text.vocabulary_size()}; use data.tokenizer.kind: teacher"
            )
        return GPT2LM(backbone=backbone)

    def student_inputs(self, tokenizers):
        import tensorflow as tf

        return {"token_ids": tf.ones([1, 2], tf.int32), "padding_mask": tf.ones([1, 2], tf.bool)}

    def supervised_terms(self, student, data, training, label_smoothing):
        """``(logits, {"xe", "nll"}, tokens)``: label-smoothed and plain cross-entropy of the
        next token summed over the positions with a label, normalised by their count (the
        tokens, also the throughput count)."""
        import keras
        from keras import ops

        from tfkd.training.losses import label_smoothed_cross_entropy
        from tfkd.training.trainer import LossTerm

        inputs, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = student({"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]}, training=training)
        labels = ops.cast(labels, "int32")
        weights = ops.cast(ops.greater_equal(labels, 0), "float32")
        count = ops.sum(weights)
        xe, nll = label_smoothed_cross_entropy(ops.maximum(labels, 0), logits, label_smoothing)
        return (
            logits,
            {"xe": LossTerm(ops.sum(xe * weights), count), "nll": LossTerm(ops.sum(nll * weights), count)},
            count,
        )

    # ------------------------------------------------------------------ metric and prediction

    def text_lm(self, context, model):
        """The :class:`~tfkd.tasks.language_model.export.TextLM` of ``model`` (the export's graph)."""
        from tfkd.tasks.language_model.export import TextLM, make_sampler

        decode = context.spec.decode
        return TextLM(model, context.tokenizers().text, make_sampler(decode), decode.max_new_tokens)

    def negative_log_likelihood(self, context, model, split, per_block=False, by_position=None):
        """``(total NLL in nats, tokens)`` of ``model`` over ``split``'s blocks (with
        ``per_block``, also ``float64 [blocks, 2]``: each block's summed NLL and tokens).
        ``by_position``: a dict that receives the NLL and token count summed at each position
        of a block (``"nll"``, ``"tokens"``: lists of ``data.block_size``; position ``k`` is
        predicted from ``k + 1`` tokens of its block)."""
        import tensorflow as tf

        from tfkd.tasks.language_model.data import block_dataset

        inputs, labels = self.blocks(context, split)

        @tf.function(reduce_retracing=True)
        def batch_nll(model_inputs, targets):
            logits = tf.cast(model(model_inputs, training=False), tf.float32)
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(targets, 0), logits)
            nll = tf.where(targets >= 0, nll, 0.0)
            counted = tf.cast(targets >= 0, tf.float32)
            return tf.reduce_sum(nll, 1), tf.reduce_sum(counted, 1), tf.reduce_sum(nll, 0), tf.reduce_sum(counted, 0)

        blocks = []
        position_nll = position_count = 0.0
        for model_inputs, targets in block_dataset(inputs, labels, context.spec.data.batch_size, training=False):
            nll, n, nll_at, n_at = batch_nll(model_inputs, targets)
            blocks.append(np.stack([nll.numpy(), n.numpy()], 1).astype("float64"))
            position_nll = position_nll + np.asarray(nll_at, np.float64)
            position_count = position_count + np.asarray(n_at, np.float64)
        blocks = np.concatenate(blocks) if blocks else np.zeros((0, 2))
        total, count = float(blocks[:, 0].sum()), int(blocks[:, 1].sum())
        if by_position is not None:
            by_position["nll"] = np.round(np.atleast_1d(position_nll), 4).tolist()
            by_position["tokens"] = np.atleast_1d(position_count).astype(int).tolist()
        return (total, count, blocks) if per_block else (total, count)

    def evaluate(self, context, student, split, workdir):
        import time

        text = self.text(context, split)
        start = time.time()
        from tfkd.tasks.language_model.report import POSITIONS

        by_position = {}
        total, tokens, blocks = self.negative_log_likelihood(
            context, student, split, per_block=True, by_position=by_position
        )
        seconds = max(time.time() - start, 1e-9)
        np.save(os.path.join(workdir, f"{split}.blocks.npy"), blocks)  # for paired tests
        words = text.words
        result = {
            "metric": "perplexity",
            "score": round(math.exp(total / words), 2),
            "word_perplexity": round(math.exp(total / words), 2),
            "token_perplexity": round(math.exp(total / max(tokens, 1)), 2),
            "nll": round(total, 3),
            "tokens": tokens,
            "words": words,
            "tokens_per_second": round(tokens / seconds, 1),
        }
        with open(os.path.join(workdir, f"{split}.json"), "w") as f:
            json.dump(result, f, indent=1)
        # for the run's report: perplexity by position in a block (by how much context a token had)
        with open(os.path.join(workdir, f"{split}.{POSITIONS}"), "w") as f:
            json.dump({"block_size": context.spec.data.block_size, **by_position}, f)
        log.info(
            "%s perplexity = %.2f per word (%d words), %.2f per token (%d tokens) [%.0f tokens/s]",
            split,
            result["word_perplexity"],
            words,
            result["token_perplexity"],
            tokens,
            result["tokens_per_second"],
        )
        return result

    def paired_test(self, context, split, baseline_dirs, candidate_dirs):
        """Perplexity per token: the split's blocks resampled as clusters of their seeds, and
        the seed-level test (:mod:`tfkd.significance`)."""
        from tfkd.significance import cluster_test, perplexity_score

        def per_seed(folders):
            return np.stack([np.load(os.path.join(f, f"{split}.blocks.npy")) for f in folders])

        result = cluster_test(
            perplexity_score, per_seed(baseline_dirs), per_seed(candidate_dirs), metric="token perplexity"
        )
        return {"token perplexity": result}

    def export(self, context, student, path):
        """``serving_default`` (scores and a continuation) and ``score`` (scores alone), both of
        ``text`` (see :mod:`tfkd.tasks.language_model.export`)."""
        from tfkd.exporters.text_saved_model import write_text_saved_model

        text_lm = self.text_lm(context, student)
        write_text_saved_model(
            path,
            {"serving_default": text_lm._score_and_generate, "score": text_lm._score},
            {
                "task": self.name,
                "input": "text",
                "output": "continuation",
                "batch_size": context.spec.decode.batch_size,
                "decode": context.spec.decode.model_dump(mode="json"),
            },
            resources=text_lm.resources(),
            max_input_chars=context.spec.export.max_input_chars,
        )

    def predictor(self, context, student):
        """Lines (prompts) -> their continuations."""
        import tensorflow as tf

        text_lm = self.text_lm(context, student)
        size = context.spec.decode.batch_size

        def predict(lines):
            outputs = []
            for start in range(0, len(lines), size):
                result = text_lm.generate(tf.constant(lines[start : start + size], tf.string))
                outputs += [t.decode("utf-8") for t in result["continuation"].numpy()]
            return outputs

        return predict

    def report(self, context, students, out_dir):
        """Perplexity by position in a block per student (:mod:`.report`)."""
        from tfkd.tasks.language_model.report import language_model_report

        return language_model_report(self, context, students, out_dir)


registry.register("task", "language_model")(LanguageModelTask())
