"""The classification task's report section: a confusion matrix per student from the predicted
labels its evaluate stage wrote, on the first split with labels; a tiny real SST-2 run of two
students (the spec's and a wider variant)."""

import pytest
from helpers import tfkd
from report_runs import check_page

from tfkd.report import build_report
from tfkd.tasks.classification import report


def test_confusion_counts_labelled_examples_only():
    gold = [0, 0, 1, 1, 1, -1]
    predicted = [0, 1, 1, 1, 0, 1]
    assert report.confusion(gold, predicted, 2) == [[1, 1], [1, 2]]
    assert report.confusion([2], [-1], 3) == [[0, 0, 0]] * 3  # a prediction that is no label: not counted


TINY_SST2 = """\
version: 1
name: tiny_classification
run_dir: {run_dir}
task: classification
stages: [vocab, train, evaluate, wide, wide_evaluate]
data:
  dir: ${{TFKD_DATA_DIR}}/sst2
  train_limit: 300
  valid_limit: 50
  test_limit: 8
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
train: {{steps: 6, checkpoint_every: 3, log_every: 2, learning_rate: 2.0, warmup_steps: 20, valid_metric_examples: 10}}
evaluate: {{splits: [valid, test]}}
variants:
  wide: {{student.hidden_dim: 48}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two tiny BERT classifiers on 300 SST-2 sentences (about 30 s on 2 cores)."""
    root = tmp_path_factory.mktemp("sst2")
    spec = root / "tiny.yaml"
    spec.write_text(TINY_SST2.format(run_dir=root / "runs"))
    out = tfkd("run", str(spec))
    assert out.returncode == 0, out.stderr[-3000:]
    return root / "runs" / "tiny_classification"


@pytest.mark.slow
def test_a_confusion_matrix_per_student(run, tmp_path):
    text, images = check_page(build_report(str(run), str(tmp_path / "report"), latency=True))
    assert "confusion-valid.png" in images and "size-speed-quality.png" in images
    # GLUE's test split has no labels: the matrices are of the valid split, 50 examples
    assert "50 labelled valid examples" in text
    assert "student recall 0 recall 1 wide" in text
    assert "could not be built" not in text and "Latency: the median over 8 test inputs" in text


@pytest.mark.slow
def test_a_student_without_per_example_predictions_is_named(run, tmp_path):
    (run / "wide_evaluate" / "valid.pred").rename(tmp_path / "kept.pred")
    try:
        text, images = check_page(build_report(str(run), str(tmp_path / "report"), latency=False))
    finally:
        (tmp_path / "kept.pred").rename(run / "wide_evaluate" / "valid.pred")
    assert "wide: no confusion matrix: its evaluate stage wrote no per-example predictions (valid.pred)" in text
    assert "confusion-valid.png" in images  # the other student's
