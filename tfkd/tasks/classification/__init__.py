"""``task: classification``: labelled texts (TSV with a header, or TFDS such as ``glue/sst2``)
in, an encoder with a classification head, accuracy and F1, an export that takes raw text and
returns the label and the label probabilities."""

import json
import logging
import os
from typing import Literal

import pydantic
from pydantic import Field, PositiveInt

from tfkd import registry
from tfkd.errors import StageError
from tfkd.spec import LocalPath, Strict, TokenizerSpec
from tfkd.tasks.base import ClassDistributions, DecodeSettings, Pretrainable, Task

log = logging.getLogger("tfkd")


class ClassificationData(Strict):
    source: Literal["text", "tfds"] = "text"
    dir: LocalPath | None = None  # a folder with the TSV files
    train_file: str = "train.tsv"
    valid_file: str = "dev.tsv"
    test_file: str = "test.tsv"
    tfds: str | None = None
    data_dir: LocalPath | None = None
    train_split: str = "train"
    valid_split: str = "validation"
    test_split: str = "test"
    text_column: str = "sentence"  # a column of the header (TSV) or a feature (TFDS)
    label_column: str = "label"
    # label names in label id order; default: the sorted distinct labels of the training split
    labels: list[str] | None = None
    train_limit: PositiveInt | None = None
    valid_limit: PositiveInt | None = None
    test_limit: PositiveInt | None = None
    max_tokens: int = Field(128, ge=3)  # [CLS] and [SEP] included; longer texts are truncated
    batch_tokens: PositiveInt = 4096
    bucket_width: PositiveInt = 8
    shuffle_buffer: PositiveInt = 100000
    tokenizer: TokenizerSpec = TokenizerSpec()

    @pydantic.field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, labels):
        # labels: [0, 1] names the labels "0" and "1", as the TSV files write them
        if isinstance(labels, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in labels]
        return labels

    @pydantic.field_validator("labels")
    @classmethod
    def _distinct_labels(cls, labels):
        if labels is None:
            return labels
        if len(labels) < 2:
            raise ValueError(f"expected at least 2 label names, got {json.dumps(labels)}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"expected distinct label names, got {json.dumps(labels)}")
        for name in labels:
            if not name.strip() or name != name.strip() or "\t" in name or "\n" in name:
                raise ValueError(
                    f"expected label names without surrounding spaces, tabs or newlines, got {json.dumps(name)}"
                )
        return labels

    @pydantic.model_validator(mode="after")
    def _source_fields(self):
        if self.source == "text" and not self.dir:
            raise ValueError(
                'source "text" needs "dir" (a folder with the TSV files train_file, valid_file, test_file)'
            )
        if self.source == "tfds" and not self.tfds:
            raise ValueError('source "tfds" needs "tfds" (a TFDS name such as "glue/sst2")')
        return self


class ClassificationDecode(DecodeSettings):
    batch_size: PositiveInt = 64


class ClassificationEvaluate(Strict):
    # a split without labels (GLUE's test split) is predicted but not scored
    splits: list[Literal["valid", "test"]] = Field(["valid"], min_length=1)


class ClassificationTask(Task, Pretrainable, ClassDistributions):
    """Texts with labels from ``{dir}/{train,valid,test}_file`` (TSV with a header) or TFDS, a
    WordPiece vocabulary, an encoder student with a head (``call({"token_ids",
    "padding_mask"}) -> logits [B, num_classes]``), label-smoothed cross-entropy over the
    labelled examples, accuracy (and F1 of label 1 with two labels)."""

    name = "classification"
    data_schema = ClassificationData
    decode_schema = ClassificationDecode
    evaluate_schema = ClassificationEvaluate
    student_arguments = ("vocabulary_size", "num_classes")
    # what pre-training on raw text means for its students (two_stage's pre-training objective)
    pretraining_objective = "masked_lm"

    def check(self, spec):
        problems = []
        if spec.data.tokenizer.kind == "teacher" and spec.teacher is None:
            problems.append((("data", "tokenizer", "kind"), 'is "teacher" but the spec has no teacher'))
        try:
            config = spec.student_config()
        except ValueError:  # an unknown student or bad settings: reported with the student section
            config = None
        longest = getattr(config, "max_sequence_length", None)
        if isinstance(longest, int) and longest < spec.data.max_tokens:
            problems.append(
                (
                    ("student", "max_sequence_length"),
                    f"is {longest} but data.max_tokens is {spec.data.max_tokens}; the student must read "
                    "inputs of data.max_tokens tokens",
                )
            )
        return problems

    # ------------------------------------------------------------------ keys

    def data_files(self, spec, splits):
        data = spec.data
        if data.source != "text":
            return []
        return [os.path.join(data.dir, getattr(data, f"{split}_file")) for split in splits]

    def data_key(self, spec, splits):
        data = spec.data
        key = {
            "source": data.source,
            "columns": [data.text_column, data.label_column],
            "labels": data.labels,
            "max_tokens": data.max_tokens,
        }
        for split in splits:
            entry = {"limit": getattr(data, f"{split}_limit")}
            if data.source == "tfds":  # local files are keyed by their content instead
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
        tokenizer = spec.data.tokenizer
        return {
            "tokenizer": tokenizer.key(),
            "train": {k: v for k, v in self.data_key(spec, ["train"]).items() if k != "max_tokens"},
            "teacher": spec.teacher.checkpoint if tokenizer.kind == "teacher" else None,
        }

    # ------------------------------------------------------------------ data

    def rows(self, context, split):
        """The :class:`~tfkd.tasks.classification.data.LabeledTexts` of ``split`` as read
        (label names, before they become ids)."""
        from tfkd.tasks.classification.data import read_rows

        return context.memo(("classification", "rows", split), lambda: read_rows(context.spec.data, split))

    def unused_texts(self, context, split):
        """The texts of ``split`` past ``data.<split>_limit`` (none without a limit), labels
        not read."""
        from tfkd.tasks.classification.data import read_rows

        data = context.spec.data
        limit = getattr(data, f"{split}_limit")
        if not limit:
            return []
        everything = data.model_copy(update={f"{split}_limit": None})
        return context.memo(("classification", "unused", split), lambda: read_rows(everything, split).texts[limit:])

    def label_names(self, context):
        """The label names in label id order (the vocab stage's ``labels.json``)."""
        return list(context.tokenizers().labels)

    def num_classes(self, context):
        return len(self.label_names(context))

    def corpus(self, context, split):
        """The :class:`~tfkd.tasks.classification.data.ClassificationCorpus` of ``split``."""
        from tfkd.tasks.classification.data import to_corpus

        where = "data.labels" if context.spec.data.labels else "the training split's labels"
        return context.memo(
            ("classification", "corpus", split),
            lambda: to_corpus(self.rows(context, split), self.label_names(context), where),
        )

    def tokenized(self, context, split, stage_name):
        """The split tokenized with the run's vocabulary and framed ``[CLS] x [SEP]`` (longer
        texts truncated to ``data.max_tokens``)."""
        from tfkd.data import SpecialIds
        from tfkd.tasks.classification.data import tokenize_corpus

        def make():
            tokenizer = context.tokenizers().text
            return tokenize_corpus(
                self.corpus(context, split),
                tokenizer,
                SpecialIds.of(tokenizer),
                context.spec.data.max_tokens,
                f"{stage_name} ({split})",
            )

        return context.memo(("classification", "tokenized", split), make)

    def example_ids(self, context, split, stage_name):
        """Every row of the split (none is dropped: long texts are truncated)."""
        return self.tokenized(context, split, stage_name).ids

    def build_vocabulary(self, context, workdir):
        from tfkd.tasks.classification.vocab import build_vocabulary

        return build_vocabulary(self, context, workdir)

    def load_tokenizers(self, vocab_dir):
        """``ClassificationTokenizers(text, labels)``: the WordPiece tokenizer and the label names."""
        from tfkd.tasks.classification.vocab import load_tokenizers

        return load_tokenizers(vocab_dir)

    def _dataset(self, tokenized, context, training, columns=None):
        from tfkd.data import SpecialIds
        from tfkd.tasks.classification.data import classification_dataset
        from tfkd.xla import resolve_jit_compile

        data = context.spec.data
        return classification_dataset(
            tokenized,
            SpecialIds.of(context.tokenizers().text),
            batch_tokens=data.batch_tokens,
            max_tokens=data.max_tokens,
            bucket_width=data.bucket_width,
            shuffle=training,
            seed=context.spec.train.seed if training else None,
            shuffle_buffer=data.shuffle_buffer,
            repeat=training,
            columns=columns,
            pad_to_bucket=resolve_jit_compile(context.spec.train.jit_compile),
        )

    def train_dataset(self, context, stage_name, columns=None, unlabeled=None):
        """Shuffled, repeated batches ``({"token_ids", "padding_mask", **columns}, labels)``.

        ``unlabeled``: raw texts trained on beside the training split, with ids ``N, N + 1,
        ...`` (``N``: the rows of the training split as read) and label -1 (no supervised
        loss; a method's columns, such as a teacher's probabilities, teach them).
        ``columns``: a dataset of dicts with ``"id"`` and fixed-shape per-example tensors; the
        examples are read in its order and the columns added to the inputs.
        """
        import numpy as np

        from tfkd.data import SpecialIds
        from tfkd.tasks.classification.data import NO_LABEL, tokenize_texts

        tokenized = self.tokenized(context, "train", stage_name)
        if unlabeled:
            tokenizer = context.tokenizers().text
            extra = tokenize_texts(
                [text.strip() for text in unlabeled],
                np.full(len(unlabeled), NO_LABEL),
                tokenizer,
                SpecialIds.of(tokenizer),
                context.spec.data.max_tokens,
                f"{stage_name} (unlabeled)",
                first_id=len(self.rows(context, "train")),
            )
            tokenized = tokenized.concatenate(extra)
        return self._dataset(tokenized, context, training=True, columns=columns)

    def valid_dataset(self, context, stage_name):
        """One pass over the validation split, or ``None`` when it has no labels."""
        corpus = self.corpus(context, "valid")
        if not corpus.labeled:
            log.info("%s: %s has no labels: no validation loss", stage_name, corpus.origin)
            return None
        return self._dataset(self.tokenized(context, "valid", stage_name), context, training=False)

    def describe_data(self, context, stage_name):
        def described(split):
            corpus = self.corpus(context, split)
            return f"{len(corpus)} {'training' if split == 'train' else 'validation'} examples" + (
                "" if corpus.labeled else " (no labels)"
            )

        return f"{described('train')}, {described('valid')}; labels: {', '.join(self.label_names(context))}"

    # ------------------------------------------------------------------ student

    def build_student(self, spec, tokenizers):
        student_cls = registry.lookup("student", spec.student.kind)
        config = spec.student_config()
        kwargs = config.model_dump() if hasattr(config, "model_dump") else dict(config)
        return student_cls(
            vocabulary_size=tokenizers.text.vocabulary_size(), num_classes=len(tokenizers.labels), **kwargs
        )

    def build_teacher(self, spec, tokenizers, backbone):
        """A :class:`~tfkd.models.bert_classifier.BertClassifier` around a pretrained BERT
        ``backbone`` (head dropout 0.1, as keras-hub's ``BertTextClassifier``)."""
        from tfkd.models.bert_classifier import BertClassifier

        if backbone.vocabulary_size != tokenizers.text.vocabulary_size():
            raise StageError(
                f"the teacher's backbone has {backbone.vocabulary_size} tokens but the run's vocabulary "
                f"has {tokenizers.text.vocabulary_size()}; use data.tokenizer.kind: teacher (without "
                "min_count)"
            )
        return BertClassifier(backbone=backbone, num_classes=len(tokenizers.labels), dropout=0.1)

    def student_inputs(self, tokenizers):
        import tensorflow as tf

        return {"token_ids": tf.ones([1, 2], tf.int32), "padding_mask": tf.ones([1, 2], tf.bool)}

    def supervised_terms(self, student, data, training, label_smoothing):
        """``(logits, {"xe", "nll"}, tokens)``: label-smoothed and plain cross-entropy summed
        over the examples with a label (label -1 is none), normalised by their count; ``tokens``
        is the number of input tokens (padding excluded)."""
        import keras
        from keras import ops

        from tfkd.training.losses import label_smoothed_cross_entropy
        from tfkd.training.trainer import LossTerm

        inputs, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        # the student's own inputs (a method's extra columns are for its trainer)
        logits = student({"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]}, training=training)
        labels = ops.cast(labels, "int32")
        labeled = ops.cast(ops.greater_equal(labels, 0), "float32")
        count = ops.sum(labeled)
        xe, nll = label_smoothed_cross_entropy(ops.maximum(labels, 0), logits, label_smoothing)
        terms = {"xe": LossTerm(ops.sum(xe * labeled), count), "nll": LossTerm(ops.sum(nll * labeled), count)}
        tokens = ops.sum(ops.cast(inputs["padding_mask"], "float32"))
        return logits, terms, tokens

    # ------------------------------------------------------------------ prediction and metric

    def classifier(self, context, model, batch_size=None):
        """The :class:`~tfkd.tasks.classification.export.TextClassifier` of ``model``: raw
        texts in, labels and probabilities out, in one graph (the export's)."""
        from tfkd.tasks.classification.export import TextClassifier

        return TextClassifier(
            model,
            context.tokenizers().text,
            self.label_names(context),
            context.spec.data.max_tokens,
            batch_size or context.spec.decode.batch_size,
        )

    def predict_probabilities(self, context, model, texts, batch_size=None):
        """``float32 [N, num_classes]``: softmax of ``model``'s logits for ``texts``, in input
        order, tokenized in graph exactly as the export does."""
        return self.classifier(context, model, batch_size).probabilities(list(texts))

    def valid_metric(self, context, student):
        import numpy as np

        from tfkd.tasks.classification.metrics import accuracy

        corpus = self.corpus(context, "valid")
        rows = np.flatnonzero(corpus.labels >= 0)[: context.spec.train.valid_metric_examples]
        if not len(rows):
            return None
        texts, labels = [corpus.texts[i] for i in rows], corpus.labels[rows]
        classifier = self.classifier(context, student)

        def valid_accuracy():
            return {"accuracy": 100 * accuracy(classifier.probabilities(texts).argmax(-1), labels)}

        return valid_accuracy

    def evaluate(self, context, student, split, workdir):
        import time

        from tfkd.tasks.classification.metrics import accuracy, f1

        corpus = self.corpus(context, split)
        names = self.label_names(context)
        log.info("classifying %d %s texts", len(corpus), split)
        start = time.time()
        probabilities = self.classifier(context, student).probabilities(
            corpus.texts, progress=not os.environ.get("TFKD_QUIET_PROGRESS")
        )
        seconds = max(time.time() - start, 1e-9)
        predicted = probabilities.argmax(-1)
        with open(os.path.join(workdir, f"{split}.pred"), "w", encoding="utf-8") as f:
            f.write("".join(names[i] + "\n" for i in predicted))
        speed = round(len(corpus) / seconds, 1)
        correct = accuracy(predicted, corpus.labels)
        if correct is None:
            log.info(
                "%s: no labels in %s; predictions only (%s.pred) [%.1f examples/s]", split, corpus.origin, split, speed
            )
            return {
                "metric": "accuracy",
                "note": f"no labels: predictions only ({split}.pred)",
                "examples": len(corpus),
                "examples_per_second": speed,
            }
        result = {"metric": "accuracy", "score": round(100 * correct, 2), "accuracy": round(100 * correct, 2)}
        if len(names) == 2:
            result["f1"] = round(100 * f1(predicted, corpus.labels), 2)
        unlabeled = int((corpus.labels < 0).sum())
        result.update({"examples": len(corpus) - unlabeled, "examples_per_second": speed})
        if unlabeled:
            result["unlabeled"] = unlabeled
        log.info(
            "%s accuracy = %.2f%s on %d examples [%.1f examples/s]",
            split,
            result["accuracy"],
            f", F1 = {result['f1']:.2f}" if "f1" in result else "",
            result["examples"],
            speed,
        )
        return result

    def paired_test(self, context, split, baseline_dirs, candidate_dirs):
        """Accuracy (and F1 of label 1 with two labels) from the ``<split>.pred`` files: the
        split's labelled examples resampled as clusters of their seeds, and the seed-level test
        (:mod:`tfkd.significance`)."""
        import numpy as np

        from tfkd import significance

        labels = np.asarray(self.corpus(context, split).labels)
        ids = {name: i for i, name in enumerate(self.label_names(context))}
        labelled = labels >= 0

        def predictions(folder):
            with open(os.path.join(folder, f"{split}.pred"), encoding="utf-8") as f:
                predicted = np.array([ids[line.rstrip("\n")] for line in f])
            if len(predicted) != len(labels):
                raise ValueError(f"{folder}: {len(predicted)} {split} predictions for {len(labels)} examples")
            return predicted[labelled]

        sides = [[predictions(f) for f in folders] for folders in (baseline_dirs, candidate_dirs)]
        metrics = {"accuracy": (significance.accuracy_statistics, significance.accuracy_score)}
        if len(ids) == 2:
            metrics["F1"] = (significance.f1_statistics, significance.f1_score)
        return {
            name: significance.cluster_test(
                score, *[np.stack([statistics(p, labels[labelled]) for p in side]) for side in sides], metric=name
            )
            for name, (statistics, score) in metrics.items()
        }

    def export(self, context, student, path):
        """``serving_default``: ``text`` -> ``label``, ``label_id``, ``probabilities`` (see
        :mod:`tfkd.tasks.classification.export`)."""
        from tfkd.exporters.text_saved_model import write_text_saved_model

        classifier = self.classifier(context, student)
        write_text_saved_model(
            path,
            {"serving_default": classifier._classify},
            {
                "task": self.name,
                "input": "text",
                "output": "label",
                "batch_size": context.spec.decode.batch_size,
                "labels": self.label_names(context),
            },
            tokenizers=(classifier.tokenizer,),
            max_input_chars=context.spec.export.max_input_chars,
        )

    def predictor(self, context, student):
        """Lines -> ``"label<TAB>probability"`` lines."""
        classifier = self.classifier(context, student)
        names = self.label_names(context)

        def predict(lines):
            probabilities = classifier.probabilities(lines, progress=True)
            return [f"{names[i]}\t{p[i]:.4f}" for p, i in zip(probabilities, probabilities.argmax(-1))]

        return predict

    def report(self, context, students, out_dir):
        """A confusion matrix per student (:mod:`.report`)."""
        from tfkd.tasks.classification.report import classification_report

        return classification_report(self, context, students, out_dir)


registry.register("task", "classification")(ClassificationTask())
