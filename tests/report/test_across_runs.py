"""``tfkd.report.across_runs``: runs that differ in one setting side by side (a learning
curve): the setting found or refused in one line, each student's scores and its paired gain
over its own run's baseline against a NumPy/sacreBLEU reference, and a valid page with its
figure. The runs are written by hand (:mod:`report_runs`)."""

import json
import os
import shutil
import statistics

import pytest
import sacrebleu
from report_runs import BASELINE, REFERENCES, STUDENT, check_page, synthetic_run

from tfkd.errors import StageError
from tfkd.report.across_runs import build_curve_report, curve_setting, run_points, varying_settings
from tfkd.report.contents import read_run


def _run(tmp_path, name, train_limit=None, seeds=(), student=STUDENT, steps=None):
    run = synthetic_run(tmp_path, name=name, seeds=seeds)
    spec = (run / "spec.yaml").read_text()
    if train_limit is not None:
        spec = spec.replace("  tgt_lang: en\n", f"  tgt_lang: en\n  train_limit: {train_limit}\n")
    if steps is not None:
        spec = spec.replace("train: {steps: 40", f"train: {{steps: {steps}")
    if seeds:  # what --seeds 1,... records
        spec = spec.replace("train: {", f"train: {{seeds: {[1, *seeds]}, ")
    (run / "spec.yaml").write_text(spec)
    for suffix in ["", *[f"-s{s}" for s in seeds]]:
        (run / f"evaluate{suffix}" / "test.hyp").write_text("\n".join(student) + "\n")
    return str(run)


def _bleu(hypotheses):
    return sacrebleu.corpus_bleu(hypotheses, [REFERENCES], lowercase=True).score


def test_the_one_setting_that_differs_places_the_runs(tmp_path):
    runs = [_run(tmp_path, "big", 5000), _run(tmp_path, "small", 2000)]
    specs = [read_run(r).spec for r in runs]
    assert varying_settings(specs) == {"data.train_limit": [5000, 2000]}  # names and folders ignored
    assert curve_setting(specs, runs) == ("data.train_limit", [5000, 2000])


def test_a_setting_that_cannot_be_told_is_one_error(tmp_path):
    a, b = _run(tmp_path, "a", 5000), _run(tmp_path, "b", 2000, steps=80)
    specs = [read_run(a).spec, read_run(b).spec]
    differ = r"^the runs differ in data.train_limit, train.steps: name the one .* --by KEY$"
    with pytest.raises(StageError, match=differ):
        curve_setting(specs, [a, b])
    assert curve_setting(specs, [a, b], by="train.steps") == ("train.steps", [40, 80])
    with pytest.raises(StageError, match=r"^--by train\.stepz: no such spec key in "):
        curve_setting(specs, [a, b], by="train.stepz")
    with pytest.raises(StageError, match=r"^--by data.src_lang: two runs have the same value"):
        curve_setting(specs, [a, b], by="data.src_lang")
    same = _run(tmp_path, "c", 5000)
    with pytest.raises(StageError, match=r"have the same settings: nothing to place them along$"):
        curve_setting([specs[0], read_run(same).spec], [a, same])
    with pytest.raises(StageError, match=r"^a report across runs needs two runs or more$"):
        curve_setting(specs[:1], [a])


def test_scores_and_gains_are_each_run_s_own(tmp_path):
    """Three seeds in the first run (the student ahead of the baseline on each), one seed in
    the second with the student writing the baseline's translations: its gain is 0, p=1."""
    ahead = read_run(_run(tmp_path, "ahead", 2000, seeds=(2, 3)))
    split, points = run_points(ahead)
    assert split == "test"
    # the scores are the stage markers' (the hand-made run's 20 and 40), one per seed
    assert points["baseline"] == {"scores": [20.0, 20.0, 20.0], "metric": "BLEU", "gain": None, "label": "baseline"}
    # the page names each student as the run's table does: its method and loss weights
    assert points["train"]["label"] == "soft_target (soft=0.1 xe=0.9)"
    assert points["train"]["scores"] == [40.0, 40.0, 40.0]
    gain = points["train"]["gain"]
    # sentences resampled as clusters of their three seeds; the gain is the mean per-seed difference
    assert gain["metric"] == "BLEU" and (gain["examples"], gain["seeds"]) == (len(REFERENCES), 3)
    assert gain["difference"] == pytest.approx(_bleu(STUDENT) - _bleu(BASELINE), abs=1e-3)
    assert gain["seed_differences"] == pytest.approx([gain["difference"]] * 3, abs=1e-3)
    assert gain["ci_low"] <= gain["difference"] <= gain["ci_high"]
    level = read_run(_run(tmp_path, "level", 5000, student=BASELINE))
    _, points = run_points(level)
    assert points["train"]["gain"]["difference"] == 0.0 and points["train"]["gain"]["p_value"] == 1.0


def test_a_run_that_trained_only_later_seeds_has_its_gain(tmp_path):
    """``tfkd run --stages baseline-s2,...,evaluate-s3``: no seed-1 students, the others compared."""
    run = _run(tmp_path, "later", 2000, seeds=(2, 3))
    for stage in ("baseline", "baseline_evaluate", "train", "evaluate"):
        shutil.rmtree(os.path.join(run, stage))
    split, points = run_points(read_run(run))
    assert split == "test"
    assert points["baseline"]["scores"] == [20.0, 20.0]
    assert points["train"]["label"] == "soft_target (soft=0.1 xe=0.9)"  # named from seed 2's stage
    gain = points["train"]["gain"]
    assert (gain["examples"], gain["seeds"]) == (len(REFERENCES), 2)  # seeds 2 and 3
    assert gain["difference"] == pytest.approx(_bleu(STUDENT) - _bleu(BASELINE), abs=1e-3)


def test_the_page_holds_the_table_and_the_curve(tmp_path):
    runs = [_run(tmp_path, "qs_10k", 10000), _run(tmp_path, "qs_2k", 2000, seeds=(2,)), _run(tmp_path, "qs_5k", 5000)]
    path = build_curve_report(runs, str(tmp_path / "curve"))
    text, images = check_page(path)
    assert images == ["curve-data-train_limit.png"]
    assert "3 runs placed along data.train_limit" in text
    # ordered by the setting's value, not by the order given
    assert text.index("qs_2k:") < text.index("qs_5k:") < text.index("qs_10k:")
    gain = _bleu(STUDENT * 2) - _bleu(BASELINE * 2)
    student = "soft_target (soft=0.1 xe=0.9)"
    assert f"2000 qs_2k {student} 2 {statistics.mean([40.0, 40.0]):.2f} ± 0.00 BLEU {gain:+.2f}" in text
    assert "2000 qs_2k baseline 2 20.00 ± 0.00 -" in text


def test_a_student_whose_weights_the_runs_vary_goes_by_its_stage_name(tmp_path):
    """Runs placed along the soft term's weight: each run's table names its student with its
    own weights, so the line across them is named by the train stage, not by one run's weights."""
    a, b = _run(tmp_path, "alpha_a", 2000), _run(tmp_path, "alpha_b", 5000)
    marker = tmp_path / "runs" / "alpha_b" / "train" / "stage.json"
    stage = json.loads(marker.read_text())
    stage["results"]["loss_weights"] = {"soft": 0.5, "xe": 0.5}
    marker.write_text(json.dumps(stage))
    text, _ = check_page(build_curve_report([a, b], str(tmp_path / "curve")))
    assert "2000 alpha_a train 1" in text and "5000 alpha_b train 1" in text
    assert "soft=0.1" not in text and "soft=0.5" not in text
    assert "2000 alpha_a baseline 1 20.00" in text  # a name every run agrees on is kept
