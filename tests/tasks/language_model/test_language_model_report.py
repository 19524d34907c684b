"""The language-model task's report section: perplexity by position in a block, from the sums
the evaluate stage writes (``<split>.positions.json``), which add up to its totals; a tiny real
WikiText-2 run of two GPT-2 students (one layer and two)."""

import json
import math

import pytest
from helpers import tfkd
from report_runs import check_page

from tfkd.report import build_report
from tfkd.tasks.language_model import report


def test_perplexity_by_position():
    positions = {"nll": [4.0, 2.0, 1.0, 1.0], "tokens": [2, 2, 2, 0]}
    assert report.perplexity_by_position(positions) == [
        (0, 0, math.exp(2.0)),
        (1, 1, math.exp(1.0)),
        (2, 2, math.exp(0.5)),  # the last position predicted nothing: left out
    ]
    assert report.perplexity_by_position(positions, groups=2) == [(0, 1, math.exp(1.5)), (2, 3, math.exp(1.0))]


TINY_LM = """\
version: 1
name: tiny_language_model
run_dir: {run_dir}
task: language_model
stages: [vocab, train, evaluate, deep, deep_evaluate]
data:
  dir: ${{TFKD_DATA_DIR}}/wikitext2
  train_limit: 300
  valid_limit: 40
  test_limit: 60
  block_size: 32
  batch_size: 8
  tokenizer: {{kind: bpe, vocab_size: 600}}
student: {{kind: gpt2_lm, num_layers: 1, hidden_dim: 16, num_heads: 2, intermediate_dim: 32, max_sequence_length: 64}}
train: {{steps: 4, checkpoint_every: 2, log_every: 2, warmup_steps: 1, schedule: linear, valid_metric_examples: 0}}
decode: {{max_new_tokens: 8}}
evaluate: {{splits: [test]}}
variants:
  deep: {{student.num_layers: 2}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two tiny GPT-2 students on 300 lines of WikiText-2 (about 30 s on 2 cores)."""
    root = tmp_path_factory.mktemp("lm")
    spec = root / "tiny.yaml"
    spec.write_text(TINY_LM.format(run_dir=root / "runs"))
    out = tfkd("run", str(spec))
    assert out.returncode == 0, out.stderr[-3000:]
    return root / "runs" / "tiny_language_model"


@pytest.mark.slow
def test_the_evaluate_stage_s_position_sums_add_up_to_its_totals(run):
    totals = json.loads((run / "evaluate" / "test.json").read_text())
    positions = json.loads((run / "evaluate" / "test.positions.json").read_text())
    assert positions["block_size"] == 32 and len(positions["nll"]) == len(positions["tokens"]) == 32
    assert sum(positions["tokens"]) == totals["tokens"]
    assert sum(positions["nll"]) == pytest.approx(totals["nll"], rel=1e-4)


@pytest.mark.slow
def test_perplexity_by_position_per_student(run, tmp_path):
    text, images = check_page(build_report(str(run), str(tmp_path / "report"), latency=True))
    assert "perplexity-by-position-test.png" in images
    assert "student position 1 " in text and "deep " in text
    assert "could not be built" not in text and "Latency: the median over 8 test inputs" in text


@pytest.mark.slow
def test_a_student_evaluated_without_position_sums_is_named(run, tmp_path):
    (run / "deep_evaluate" / "test.positions.json").rename(tmp_path / "kept.json")
    try:
        text, images = check_page(build_report(str(run), str(tmp_path / "report"), latency=False))
    finally:
        (tmp_path / "kept.json").rename(run / "deep_evaluate" / "test.positions.json")
    assert "deep: no perplexity by position:" in text and "has no test.positions.json" in text
    assert "perplexity-by-position-test.png" in images
