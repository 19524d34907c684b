"""The classification task: its loss terms against NumPy, accuracy and F1, the BERT
classifier student, an export served without tfkd that equals in-process predictions, and a
tiny SST-2 run through the CLI."""

import json
import os
import types

import keras
import numpy as np
import pytest
from helpers import FakeContext, serve_only, tfkd

from tfkd.data import SpecialIds
from tfkd.models.bert_classifier import BertClassifier
from tfkd.spec import ExportSpec
from tfkd.tasks.classification import ClassificationData, ClassificationDecode, ClassificationTask
from tfkd.tasks.classification.metrics import accuracy, f1
from tfkd.tasks.classification.vocab import ClassificationTokenizers
from tfkd.testing import TestCase


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_supervised_terms_match_numpy_and_ignore_unlabeled_examples():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 3)).astype("float32")
    labels = np.array([2, -1, 0, 1], np.int32)
    padding_mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]], bool)
    seen = {}

    def student(inputs, training):
        seen.update(inputs=set(inputs), training=training)
        return keras.ops.convert_to_tensor(logits)

    inputs = {
        "token_ids": np.ones([4, 4], np.int32),
        "padding_mask": padding_mask,
        "teacher_probs": np.zeros([4, 3], np.float32),
    }
    epsilon = 0.1
    outputs, terms, tokens = ClassificationTask().supervised_terms(student, (inputs, labels), True, epsilon)
    # the student sees its own inputs only
    assert seen == {"inputs": {"token_ids", "padding_mask"}, "training": True}
    np.testing.assert_allclose(outputs, logits)
    log_probs = log_softmax(logits.astype("float64"))
    labeled = labels >= 0
    nll = -log_probs[np.arange(4), np.maximum(labels, 0)]
    smoothed = (1 - epsilon) * nll - epsilon * log_probs.mean(-1)
    np.testing.assert_allclose(float(terms["xe"].total), smoothed[labeled].sum(), rtol=1e-5)
    np.testing.assert_allclose(float(terms["nll"].total), nll[labeled].sum(), rtol=1e-5)
    assert float(terms["xe"].count) == float(terms["nll"].count) == 3
    assert float(tokens) == 11
    # no smoothing: both terms are the negative log-likelihood
    _, plain, _ = ClassificationTask().supervised_terms(student, (inputs, labels), False, 0.0)
    np.testing.assert_allclose(float(plain["xe"].total), nll[labeled].sum(), rtol=1e-5)


def test_accuracy_and_f1_by_hand():
    predicted = [1, 0, 1, 1, 0, 1]
    labels = [1, 0, 0, 1, 1, -1]  # the last has no label: not scored
    assert accuracy(predicted, labels) == pytest.approx(3 / 5)
    # label 1: TP 2 (rows 0, 3), FP 1 (row 2), FN 1 (row 4)
    assert f1(predicted, labels) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert f1([0, 0], [0, 0]) == 0.0  # no positive at all
    assert accuracy([0, 1], [-1, -1]) is None


class BertClassifierTest(TestCase):
    def inputs(self):
        token_ids = np.array([[2, 7, 8, 3, 0], [2, 9, 3, 0, 0]], np.int32)
        return {"token_ids": token_ids, "padding_mask": token_ids != 0}

    def test_round_trips_and_gives_logits_per_example(self):
        model = BertClassifier(
            vocabulary_size=30,
            num_classes=3,
            num_layers=1,
            hidden_dim=16,
            num_heads=2,
            intermediate_dim=32,
            max_sequence_length=8,
        )
        logits = model(self.inputs())
        self.assertEqual(tuple(logits.shape), (2, 3))
        self.assertEqual(model.hidden_dim, 16)
        revived = self.run_serialization_test(model)
        revived(self.inputs())
        revived.set_weights(model.get_weights())
        self.assertAllClose(model(self.inputs()), revived(self.inputs()), atol=1e-5)
        # padding does not change an example's logits
        longer = {k: np.pad(v, [[0, 0], [0, 3]]) for k, v in self.inputs().items()}
        self.assertAllClose(model(longer), logits, atol=1e-5)

    def test_wraps_an_existing_backbone(self):
        import keras_hub

        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=8
        )
        model = BertClassifier(backbone=backbone, num_classes=2)
        self.assertIs(model.backbone, backbone)
        self.assertEqual((model.hidden_dim, model.vocabulary_size), (16, 30))
        self.assertEqual(tuple(model(self.inputs()).shape), (2, 2))
        config = model.get_config()
        self.assertIn("backbone", config)
        self.assertNotIn("vocabulary_size", config)
        revived = self.run_serialization_test(model)
        revived(self.inputs())
        revived.set_weights(model.get_weights())
        self.assertAllClose(model(self.inputs()), revived(self.inputs()), atol=1e-5)
        with pytest.raises(ValueError, match="vocabulary_size=31 but the backbone has 30 tokens"):
            BertClassifier(vocabulary_size=31, backbone=backbone)


TEXTS = [
    "the cat sat on the mat .",
    "",
    "a dog runs .",
    "zebras quietly xylophone",
    "the cat " * 30,
    "a dog number 3 sat on the mat .",
]


def test_export_serves_without_tfkd_and_equals_in_process_predictions(tmp_path, tokenizer):
    keras.utils.set_random_seed(1)
    labels = ["negative", "neutral", "positive"]
    spec = types.SimpleNamespace(
        data=ClassificationData(dir=str(tmp_path), max_tokens=16),
        decode=ClassificationDecode(batch_size=4),
        export=ExportSpec(),
    )
    context = FakeContext(spec, ClassificationTokenizers(tokenizer, labels))
    task = ClassificationTask()
    student = BertClassifier(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_classes=3,
        num_layers=1,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        max_sequence_length=16,
    )
    student(task.student_inputs(context.tokenizers()))
    in_process = task.predict_probabilities(context, student, TEXTS)
    assert in_process.shape == (len(TEXTS), 3) and in_process.dtype == np.float32
    np.testing.assert_allclose(in_process.sum(-1), 1, rtol=1e-5)
    # one by one gives the same as length-sorted batches (input order kept, padding ignored)
    one_by_one = task.predict_probabilities(context, student, TEXTS, batch_size=1)
    np.testing.assert_allclose(one_by_one, in_process, atol=1e-5)
    # the in-graph tokenization is the training data's: [CLS] x [SEP], truncated to max_tokens
    special = SpecialIds.of(tokenizer)
    from tfkd.data import tokenize_to_ragged

    ids = tokenize_to_ragged(tokenizer, TEXTS[:1]).to_list()[0]
    direct = keras.ops.softmax(
        student(
            {
                "token_ids": np.array([[special.bos, *ids, special.eos]], np.int32),
                "padding_mask": np.ones([1, len(ids) + 2], bool),
            }
        )
    )
    np.testing.assert_allclose(in_process[:1], direct, atol=1e-5)
    # an empty text is labeled from [CLS] [SEP] alone
    empty = keras.ops.softmax(
        student({"token_ids": np.array([[special.bos, special.eos]], np.int32), "padding_mask": np.ones([1, 2], bool)})
    )
    assert TEXTS[1] == ""
    np.testing.assert_allclose(in_process[1:2], empty, atol=1e-5)

    path = tmp_path / "export"
    task.export(context, student, str(path))
    served = serve_only(path, TEXTS, tmp_path, input_name="text")
    assert served["loaded"] == []
    np.testing.assert_allclose(np.array(served["probabilities"]), in_process, atol=1e-5)
    assert served["label_id"] == in_process.argmax(-1).tolist()
    assert served["label"] == [labels[i] for i in in_process.argmax(-1)]
    info = json.loads((path / "assets.extra" / "tfkd.json").read_text())
    assert info == {
        "task": "classification",
        "input": "text",
        "output": "label",
        "batch_size": 4,
        "labels": labels,
        "max_input_chars": 65536,
    }
    lines = task.predictor(context, student)(TEXTS[:2])
    assert [line.split("\t")[0] for line in lines] == served["label"][:2]
    assert [float(line.split("\t")[1]) for line in lines] == pytest.approx(in_process[:2].max(-1), abs=1e-4)


TINY_SST2 = """\
version: 1
name: {name}
run_dir: {run_dir}
task: classification
data:
  dir: ${{TFKD_DATA_DIR}}/sst2
  train_limit: 300
  valid_limit: 50
  test_limit: 20
  max_tokens: 48
  batch_tokens: 1024
  tokenizer: {{vocab_size: 500, lowercase: true}}
student:
  kind: bert_classifier
  num_layers: 1
  hidden_dim: 32
  num_heads: 2
  intermediate_dim: 64
  max_sequence_length: 48
train:
  steps: 6
  checkpoint_every: 3
  log_every: 2
  learning_rate: 2.0
  warmup_steps: 20
  valid_metric_examples: 10
evaluate: {{splits: [valid, test]}}
"""


@pytest.mark.slow
def test_tiny_sst2_run_trains_evaluates_and_exports(tmp_path):
    spec = tmp_path / "sst2.yaml"
    spec.write_text(TINY_SST2.format(name="sst2", run_dir=tmp_path / "runs"))
    out = tfkd("run", str(spec), "--set", "stages=[vocab,train,evaluate,export]", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "runs" / "sst2"
    assert json.loads((run_dir / "vocab" / "labels.json").read_text()) == ["0", "1"]
    scores = json.loads((run_dir / "evaluate" / "scores.json").read_text())
    valid, test = scores["valid"], scores["test"]
    assert valid["metric"] == "accuracy" and valid["examples"] == 50
    # the scores are those of the written predictions
    predicted = (run_dir / "evaluate" / "valid.pred").read_text().splitlines()
    with open(os.path.join(os.environ["TFKD_DATA_DIR"], "sst2", "dev.tsv")) as f:
        gold = [line.rstrip("\n").split("\t")[1] for line in list(f)[1:51]]
    correct = sum(p == g for p, g in zip(predicted, gold))
    assert valid["score"] == valid["accuracy"] == round(100 * correct / 50, 2)
    true_positives = sum(p == g == "1" for p, g in zip(predicted, gold))
    errors = 50 - correct  # two labels: every error is a false positive or a false negative of label 1
    assert valid["f1"] == (
        round(100 * 2 * true_positives / (2 * true_positives + errors), 2) if true_positives + errors else 0.0
    )
    # GLUE's test split has no labels: predicted, not scored
    assert "score" not in test and "no labels" in test["note"] and test["examples"] == 20
    assert len((run_dir / "evaluate" / "test.pred").read_text().splitlines()) == 20
    assert f"sst2: student valid accuracy {valid['score']:.2f}" in out.stdout
    saved_model = run_dir / "export" / "sst2" / "1"
    assert (saved_model / "saved_model.pb").exists()
    # tfkd translate reads the export (text in, label out)
    source = tmp_path / "in.txt"
    source.write_text("a charming and often affecting journey .\nbleak and desperate\n")
    served = tfkd("translate", str(saved_model.parent), "-i", str(source))
    assert served.returncode == 0, served.stderr[-3000:]
    assert all(line in ("0", "1") for line in served.stdout.splitlines()) and len(served.stdout.splitlines()) == 2


def test_the_student_schema_survives_importing_the_class():
    from tfkd import registry
    from tfkd.models.configs import BertClassifierConfig

    registry.lookup("student", "bert_classifier")  # imports the class in place of its declaration
    assert registry.schema("student", "bert_classifier") is BertClassifierConfig


def test_the_paired_test_reads_each_seeds_predictions_and_tests_accuracy_and_f1(tmp_path):
    task = ClassificationTask()
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1, -1, 1])  # -1: an unlabelled example, left out
    task.corpus = lambda context, split: types.SimpleNamespace(labels=labels)
    task.label_names = lambda context: ["neg", "pos"]
    folders = {}
    for name, predicted in {
        "b1": [0, 0, 1, 1, 0, 0, 1, 1, 1, 0],
        "b2": [0, 1, 0, 1, 0, 0, 1, 1, 0, 0],
        "c1": [0, 1, 1, 0, 1, 0, 0, 1, 0, 1],
        "c2": [0, 1, 1, 0, 1, 0, 1, 1, 1, 1],
    }.items():
        folders[name] = tmp_path / name
        folders[name].mkdir()
        (folders[name] / "test.pred").write_text("".join(["neg\n", "pos\n"][p] for p in predicted))
    tests = task.paired_test(None, "test", [folders["b1"], folders["b2"]], [folders["c1"], folders["c2"]])
    assert sorted(tests) == ["F1", "accuracy"]
    # 9 labelled examples a seed, pooled: baseline 4 + 4 of 9 right, candidate 9 + 8
    assert tests["accuracy"]["baseline"] == pytest.approx(100 * 8 / 18, abs=1e-3)
    assert tests["accuracy"]["candidate"] == pytest.approx(100 * 17 / 18, abs=1e-3)
    # (the mean of the seeds' accuracies: the seeds have the same number of examples)
    assert tests["accuracy"]["examples"] == 9 and tests["accuracy"]["seeds"] == 2
    assert tests["accuracy"]["significant"] and tests["accuracy"]["ci_low"] > 0
