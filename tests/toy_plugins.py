"""A user module (named under a spec's ``imports:``) that adds a task and a method to tfkd.

Task ``toy_reverse``: read digit sequences, predict them reversed (one output per input
position); the metric is token accuracy. Method ``toy_prior``: a stage ``toy_prior_fit`` that
counts the training targets' digits into a prior distribution, and a loss term ``prior`` (the
cross-entropy of each position's prediction against that prior, normalised per sentence) next
to the task's ``xe``.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from pydantic import PositiveInt

import tfkd
from tfkd.methods import Method, MethodSpec
from tfkd.plan import PlannedStage
from tfkd.runner import Stage
from tfkd.spec import Strict
from tfkd.tasks import Task
from tfkd.training.trainer import LossTerm, SupervisedTrainer

PAD = 0
DIGITS = 10  # token i + 1 is digit i


class ToyData(Strict):
    file: str  # one digit sequence per line, e.g. "3 1 4"
    valid_file: str | None = None
    batch_size: PositiveInt = 16
    limit: PositiveInt | None = None


class ToyEvaluate(Strict):
    splits: list[str] = ["valid"]


def read_sequences(path, limit=None):
    with open(path) as f:
        rows = [[int(t) + 1 for t in line.split()] for line in f if line.strip()]
    return rows[:limit] if limit else rows


@tfkd.register("student", "toy_tagger")
class ToyTagger(keras.Model):
    def __init__(self, vocab_size, hidden_dim=16, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.hidden_dim = vocab_size, hidden_dim
        self.pad_id = PAD
        self.embedding = keras.layers.Embedding(vocab_size, hidden_dim)
        self.mixer = keras.layers.Bidirectional(keras.layers.GRU(hidden_dim, return_sequences=True))
        self.out = keras.layers.Dense(vocab_size)

    def call(self, token_ids, training=False):
        return self.out(self.mixer(self.embedding(token_ids)))

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "hidden_dim": self.hidden_dim}


class ToyReverseTask(Task):
    name = "toy_reverse"
    data_schema = ToyData
    evaluate_schema = ToyEvaluate
    student_arguments = ("vocab_size",)

    def _path(self, spec, split):
        return spec.data.file if split == "train" else spec.data.valid_file

    def data_files(self, spec, splits):
        return [self._path(spec, s) for s in splits if self._path(spec, s)]

    def data_key(self, spec, splits):
        return {"limit": spec.data.limit}

    def batching_key(self, spec):
        return {"batch_size": spec.data.batch_size}

    def vocab_config(self, spec):
        return {"digits": DIGITS}

    def build_vocabulary(self, context, workdir):
        with open(os.path.join(workdir, "vocab.json"), "w") as f:
            json.dump({"size": DIGITS + 1}, f)
        return {"vocab_size": DIGITS + 1}

    def load_tokenizers(self, vocab_dir):
        with open(os.path.join(vocab_dir, "vocab.json")) as f:
            return json.load(f)

    def rows(self, context, split):
        return context.memo(
            ("toy", split), lambda: read_sequences(self._path(context.spec, split), context.spec.data.limit)
        )

    def example_ids(self, context, split, stage_name):
        return np.arange(len(self.rows(context, split)))

    def _dataset(self, context, split, training):
        rows = self.rows(context, split)
        ragged = tf.ragged.constant(rows, dtype=tf.int32)
        ds = tf.data.Dataset.from_tensor_slices(ragged)
        if training:
            ds = ds.shuffle(len(rows), seed=context.spec.train.seed).repeat()
        ds = ds.map(lambda x: (x, tf.reverse(x, [0])))
        return ds.padded_batch(context.spec.data.batch_size)

    def train_dataset(self, context, stage_name, columns=None):
        return self._dataset(context, "train", True)

    def valid_dataset(self, context, stage_name):
        return self._dataset(context, "valid", False) if context.spec.data.valid_file else None

    def describe_data(self, context, stage_name):
        return f"{len(self.rows(context, 'train'))} sequences"

    def build_student(self, spec, tokenizers):
        cls = tfkd.registry.lookup("student", spec.student.kind)
        return cls(vocab_size=tokenizers["size"], **spec.student_config())

    def student_inputs(self, tokenizers):
        return tf.ones([1, 3], tf.int32)

    def supervised_terms(self, student, data, training, label_smoothing):
        inputs, targets = data
        logits = student(inputs, training=training)
        mask = ops.cast(ops.not_equal(targets, PAD), "float32")
        xe = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        tokens = ops.sum(mask)
        return logits, {"xe": LossTerm(ops.sum(xe * mask), tokens)}, tokens

    def predict_rows(self, student, rows):
        ragged = tf.ragged.constant(rows, dtype=tf.int32)
        return np.argmax(student(ragged.to_tensor()).numpy(), -1)

    def evaluate(self, context, student, split, workdir):
        rows = self.rows(context, split)
        predicted = self.predict_rows(student, rows)
        correct = sum(int((predicted[i, : len(r)] == np.array(r[::-1])).sum()) for i, r in enumerate(rows))
        total = sum(len(r) for r in rows)
        return {"metric": "accuracy", "score": round(100 * correct / total, 2)}

    def export(self, context, student, path):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(lines):
            ids = tf.strings.to_number(tf.strings.split(lines), tf.int32) + 1
            out = tf.argmax(student(ids.to_tensor()), -1, output_type=tf.int32) - 1
            return {"reversed": tf.strings.reduce_join(tf.strings.as_string(out), axis=-1, separator=" ")}

        tf.saved_model.save(student, path, signatures={"serving_default": serve})

    def predictor(self, context, student):
        def predict(lines):
            rows = [[int(t) + 1 for t in line.split()] for line in lines]
            predicted = self.predict_rows(student, rows)
            return [" ".join(str(int(t) - 1) for t in predicted[i, : len(r)]) for i, r in enumerate(rows)]

        return predict


class ToyPriorSpec(MethodSpec):
    method: str = "toy_prior"
    smoothing: float = 1.0  # add-k counts of the prior
    # a stand-in for a run that diverges: from this step on, the prior term is NaN while the
    # optimizer's learning rate is above diverge_above_learning_rate (unset: never)
    diverge_from_step: int = 0
    diverge_above_learning_rate: float | None = None


class ToyPriorFitStage(Stage):
    name = "toy_prior_fit"

    def config(self, spec):
        return {"smoothing": spec.distill.smoothing, "data": spec.data.model_dump()}

    def input_files(self, spec):
        return [spec.data.file]

    def run(self, context, workdir):
        counts = np.full(DIGITS + 1, context.spec.distill.smoothing)
        counts[PAD] = 0
        for row in context.task.rows(context, "train"):
            for token in row:
                counts[token] += 1
        prior = (counts / counts.sum()).tolist()
        with open(os.path.join(workdir, "prior.json"), "w") as f:
            json.dump(prior, f)
        return {"prior": [round(p, 4) for p in prior]}


class ToyPriorTrainer(SupervisedTrainer):
    def __init__(self, student, task, prior, diverge=None, **kwargs):
        super().__init__(student, task, **kwargs)
        self.prior = prior
        self.diverge = diverge  # (from step, above learning rate) or None

    def compute_terms(self, data, training):
        logits, terms, tokens = self.task.supervised_terms(self.student, data, training, self.label_smoothing)
        _, targets = data
        mask = ops.cast(ops.not_equal(targets, PAD), "float32")
        log_probs = ops.log_softmax(logits, axis=-1)
        per_token = -ops.sum(ops.convert_to_tensor(self.prior, "float32") * log_probs, axis=-1)
        per_sentence = ops.sum(per_token * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)
        total = ops.sum(per_sentence)
        if self.diverge is not None and training:
            step, above = self.diverge
            diverged = ops.greater_equal(self.optimizer.iterations, step) & ops.greater(
                ops.cast(self.optimizer.learning_rate, "float32"), above
            )
            total = ops.where(diverged, float("nan"), total)
        terms["prior"] = LossTerm(total, ops.shape(targets)[0])
        return terms, tokens


class ToyPriorMethod(Method):
    name = "toy_prior"
    spec_schema = ToyPriorSpec
    loss_terms = ("xe", "prior")

    def default_loss_weights(self, section):
        return {"xe": 1.0, "prior": 0.1}

    def plan_stages(self, context):
        return [PlannedStage("toy_prior_fit", ("vocab",), ToyPriorFitStage)]

    def train_inputs(self, context):
        return ("toy_prior_fit",)

    def make_trainer(self, context, student):
        spec, task = context.spec, context.task
        with open(os.path.join(context.runner.stage_dir("toy_prior_fit"), "prior.json")) as f:
            prior = json.load(f)
        diverge = spec.distill.diverge_above_learning_rate
        return ToyPriorTrainer(
            student,
            task,
            prior,
            label_smoothing=0.0,
            loss_weights=self.loss_weights(spec.distill),
            diverge=None if diverge is None else (spec.distill.diverge_from_step, diverge),
        )


tfkd.register("task", "toy_reverse")(ToyReverseTask())
tfkd.register("method", "toy_prior")(ToyPriorMethod())
