"""A sweep's ``select`` stage: the student is chosen on the validation split alone, and only
the chosen one is scored on test."""

import json

import pytest
from helpers import tfkd
from test_pipeline import write_toy

from tfkd.selection import SelectStage, choose


def test_choose_takes_the_best_mean_in_the_metrics_direction():
    assert choose({"a": [30.0, 32.0], "b": [31.5, 31.0], "c": [29.0, 35.0]}, "BLEU") == "c"
    assert choose({"a": [30.0, 32.0], "b": [31.5, 31.0]}, "perplexity") == "a"
    assert choose({"a": [1.0], "b": [1.0]}, "accuracy") == "a"  # a tie goes to the first


class ReadsNoTest(dict):
    """A stage's results that fail the test when a test split's score is read."""

    def get(self, key, default=None):
        if key == "test":
            pytest.fail("the selection read a test score")
        return super().get(key, default)

    def __getitem__(self, key):
        if key == "test":
            pytest.fail("the selection read a test score")
        return super().__getitem__(key)


class FakeRunner:
    def __init__(self, markers):
        self.markers = markers

    def marker(self, name):
        return self.markers.get(name)


class FakeContext:
    def __init__(self, spec, runner):
        self.spec, self.runner = spec, runner


def test_the_choice_reads_the_validation_scores_and_never_a_test_score():
    class Sweep:
        split = "valid"

    class Spec:
        sweep = Sweep()

    def scored(valid, test):
        results = ReadsNoTest(valid={"metric": "BLEU", "score": valid}, test={"metric": "BLEU", "score": test})
        return {"results": results}

    # on test the order is the other way round: a choice that looked there would pick alpha0.25
    markers = {
        "evaluate": scored(30.0, 40.0),
        "evaluate-s2": scored(31.0, 40.0),
        "alpha0.25_evaluate": scored(20.0, 50.0),
        "alpha0.25_evaluate-s2": scored(21.0, 50.0),
    }
    stage = SelectStage("select", {"train": ["train", "train-s2"], "alpha0.25": ["alpha0.25", "alpha0.25-s2"]})
    metric, scores = stage._scores(FakeContext(Spec(), FakeRunner(markers)))
    assert metric == "BLEU" and scores == {"train": [30.0, 31.0], "alpha0.25": [20.0, 21.0]}
    assert choose(scores, metric) == "train"


@pytest.mark.slow
def test_a_sweep_trains_each_setting_scores_them_on_valid_and_only_the_chosen_one_on_test(tmp_path):
    spec = write_toy(tmp_path)
    sweep = "sweep={grid: {train.learning_rate: [0.05, 2.0, 4.0]}}"
    flags = ["--set", sweep, "--set", "evaluate.splits=[valid, test]", "--set", "train.steps=20"]
    out = tfkd("run", spec, "--stages", "vocab,toy_prior_fit,train,evaluate", *flags)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "toy"
    # the spec's own learning rate (2.0) is the train stage; the others are variants
    candidates = {"train": "evaluate", "learning_rate0.05": "learning_rate0.05_evaluate"}
    candidates["learning_rate4.0"] = "learning_rate4.0_evaluate"
    valid = {}
    for student, evaluate in candidates.items():
        scores = json.load(open(run / evaluate / "scores.json"))
        assert sorted(scores) == ["valid"], evaluate  # test is not read for a candidate
        valid[student] = scores["valid"]["score"]
    selection = json.load(open(run / "select" / "stage.json"))["results"]
    best = max(valid, key=valid.get)
    assert selection["chosen"] == best and selection["candidates"] == {k: [v] for k, v in valid.items()}
    assert selection["selected_on"] == {"split": "valid", "metric": "accuracy", "seeds": [1]}
    assert sorted(selection["scores"]["1"]) == ["test"]
    assert json.load(open(run / "select" / "s1" / "scores.json")) == selection["scores"]["1"]
    # the table: the chosen student's test score, the others' test cells empty
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    chosen_row = next(r for r in rows if "[chosen on valid accuracy]" in r)
    assert f"{selection['scores']['1']['test']['score']:.2f}" in chosen_row
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[1:3] == ["valid accuracy", "test accuracy"]
    others = [r for r in rows[1:] if "[chosen" not in r]
    assert len(others) == 2
    assert all(r.strip("|").split("|")[2].strip() == "-" for r in others)
