"""The comparison table: mean ± std over seeds, and each student's difference to the baseline
(and, told, to a second student) with its confidence interval and two-sided p from the task's
sentence-cluster test over every seed's test outputs, the per-seed differences and the
seed-level p, Holm-adjusted; established only from three seeds on."""

import os

import pytest
from helpers import REPO

from tfkd import registry
from tfkd.comparison import (
    FEW_SEEDS,
    comparison_rows,
    comparison_table,
    difference_header,
    paired_differences,
    render_table,
    score_lines,
    student_stage,
)
from tfkd.errors import StageError
from tfkd.spec import load_spec


def degrade(lines, every):
    return [" ".join("xx" if i % every == 0 else w for i, w in enumerate(line.split())) for line in lines]


def test_seeds_are_summarised_and_the_difference_is_tested_on_every_seeds_test_outputs(tmp_path, data_dir):
    spec = load_spec(os.path.join(REPO, "specs", "quickstart.yaml"), ["train.seeds=[1,2,3]"])
    with open(os.path.join(data_dir, "multi30k_deen", "test.en"), encoding="utf-8") as f:
        references = [line.rstrip("\n") for line in f]
    train = {"method": "soft_target", "loss_weights": {"soft": 0.1, "xe": 0.9}, "steps": 10, "seconds": 1}
    results = {
        "baseline": dict(train, method="supervised", loss_weights={"xe": 1.0}),
        "baseline-s2": dict(train, method="supervised", loss_weights={"xe": 1.0}),
        "baseline-s3": dict(train, method="supervised", loss_weights={"xe": 1.0}),
        "train": train,
        "train-s2": train,
        "train-s3": train,
    }
    outputs = {
        "baseline_evaluate": (degrade(references, 3), 30.0),
        "baseline_evaluate-s2": (degrade(references, 3), 31.0),
        "baseline_evaluate-s3": (degrade(references, 4), 32.0),
        "evaluate": (degrade(references, 6), 33.0),
        "evaluate-s2": (degrade(references, 7), 34.0),
        "evaluate-s3": (degrade(references, 8), 35.0),
    }
    for stage, (hypotheses, score) in outputs.items():
        os.makedirs(tmp_path / stage)
        (tmp_path / stage / "test.hyp").write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
        results[stage] = {"test": {"metric": "BLEU", "score": score}}
    header, rows = comparison_rows(spec, results, str(tmp_path))
    table = render_table(header, rows)
    assert header[:4] == [
        "student",
        "seeds (3; one teacher)",  # the teacher's stages ran once for all seeds
        "test BLEU (mean ± std)",
        difference_header("baseline", "test"),
    ]
    baseline, student = rows[-2], rows[-1]
    assert baseline[0] == "baseline" and baseline[2] == "31.00 ± 1.00" and baseline[3] == "-"
    assert student[1] == "1, 2, 3" and student[2] == "34.00 ± 1.00"
    # the hypotheses of the student are closer to the references on every seed: established,
    # each seed's difference shown
    bleu, chrf = student[3].split("; chrF ")
    assert bleu.startswith("BLEU +") and "p=0.002 (0.002)" in bleu and chrf.endswith("*")
    seed_differences = bleu.split("; seeds ")[1].split(" p=")[0].split()
    assert len(seed_differences) == 3 and all(d.startswith("+") for d in seed_differences)
    low, high = (float(x) for x in student[3].split("[")[1].split("]")[0].split(", "))
    assert 0 < low < high
    assert table.count("\n") == len(rows) + 1
    assert comparison_table(spec, results, str(tmp_path)) == table  # three seeds: no warning below it
    assert "quickstart: student seed 2 test BLEU 34.00" in score_lines(spec, results)


def test_a_run_without_its_first_seeds_students_compares_the_others(tmp_path, data_dir):
    """Seeds 2 and 3 trained (``tfkd run --stages baseline-s2,...``), seed 1 not: the table has
    both students over the seeds they finished, named from seed 2's stages, and their test."""
    spec = load_spec(os.path.join(REPO, "specs", "quickstart.yaml"), ["train.seeds=[1,2,3]"])
    with open(os.path.join(data_dir, "multi30k_deen", "test.en"), encoding="utf-8") as f:
        references = [line.rstrip("\n") for line in f]
    train = {"method": "soft_target", "loss_weights": {"soft": 0.1, "xe": 0.9}, "steps": 10, "seconds": 7}
    results = {}
    for seed, (base, student) in {2: (30.0, 33.0), 3: (31.0, 35.0)}.items():
        results[f"baseline-s{seed}"] = dict(train, method="supervised", loss_weights={"xe": 1.0})
        results[f"train-s{seed}"] = train
        for stage, every, score in (("baseline_evaluate", 3, base), ("evaluate", 7, student)):
            os.makedirs(tmp_path / f"{stage}-s{seed}")
            hypotheses = degrade(references, every + seed)
            (tmp_path / f"{stage}-s{seed}" / "test.hyp").write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
            results[f"{stage}-s{seed}"] = {"test": {"metric": "BLEU", "score": score}}
    header, rows = comparison_rows(spec, results, str(tmp_path))
    assert header[:4] == [
        "student",
        "seeds (3; one teacher)",
        "test BLEU (mean ± std)",
        difference_header("baseline", "test"),
    ]
    baseline, student = rows[-2], rows[-1]
    assert baseline[:4] == ["baseline", "2, 3", "30.50 ± 0.71", "-"]
    assert student[:3] == ["soft_target (soft=0.1 xe=0.9)", "2, 3", "34.00 ± 1.41"]
    # two seeds: the sentences say so, the seeds cannot judge, so nothing is established
    assert student[3].startswith("BLEU +") and "p=0.002" in student[3] and ": cannot judge" in student[3]
    assert not student[3].endswith("*")
    assert student[header.index("train s")] == "7"


def test_without_a_run_folder_there_is_no_test_column(data_dir):
    spec = load_spec(os.path.join(REPO, "specs", "quickstart.yaml"))
    train = {"method": "supervised", "steps": 1, "seconds": 1}
    results = {
        "baseline": train,
        "train": dict(train, method="soft_target"),
        "baseline_evaluate": {"test": {"metric": "BLEU", "score": 1.0}},
        "evaluate": {"test": {"metric": "BLEU", "score": 2.0}},
    }
    header, rows = comparison_rows(spec, results)
    assert header[1] == "test BLEU" and [r[1] for r in rows[-2:]] == ["1.00", "2.00"]


def test_against_a_variant_adds_a_column_testing_every_other_student_against_it(tmp_path, data_dir):
    """``tfkd report --against plain``: beside the baseline column, each student minus the
    ``plain`` variant (the papers' second comparison: LightPAFF against the pre-trained student
    without KD), the same paired test the baseline column uses with that student as reference."""
    spec = load_spec(
        os.path.join(REPO, "specs", "quickstart.yaml"),
        ["train.seeds=[1,2]", "variants={plain: {distill.alpha: 0.0}}"],
    )
    with open(os.path.join(data_dir, "multi30k_deen", "test.en"), encoding="utf-8") as f:
        references = [line.rstrip("\n") for line in f]
    train = {"method": "soft_target", "loss_weights": {"soft": 0.1, "xe": 0.9}, "steps": 10, "seconds": 1}
    results = {}
    # the baseline worst, the variant between, the student closest to the references
    for student, evaluate, every in (("baseline", "baseline_evaluate", 3), ("plain", "plain_evaluate", 5)) + (
        ("train", "evaluate", 9),
    ):
        for seed, suffix in ((1, ""), (2, "-s2")):
            results[student + suffix] = train
            os.makedirs(tmp_path / (evaluate + suffix))
            hypotheses = degrade(references, every + seed - 1)
            (tmp_path / (evaluate + suffix) / "test.hyp").write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
            results[evaluate + suffix] = {"test": {"metric": "BLEU", "score": 30.0 + every}}
    header, rows = comparison_rows(spec, results, str(tmp_path), against="plain")
    assert header[3:5] == [difference_header("baseline", "test"), difference_header("plain", "test")]
    baseline, plain, student = rows[-3:]
    assert plain[0].startswith("plain: ") and plain[4] == "-"
    assert baseline[3] == "-" and baseline[4].startswith("BLEU -")  # the baseline is below plain
    assert plain[3].startswith("BLEU +") and student[3].startswith("BLEU +")
    # Holm over the column's two rows doubles the smallest p
    assert student[4].startswith("BLEU +") and "p=0.002 (0.004)" in student[4] and "2 seeds " in student[4]
    # the column is paired_differences with plain as the reference; baseline's is its mirror
    _, tests = paired_differences(spec, results, str(tmp_path), reference="plain")
    assert set(tests) == {"baseline", "train"}
    assert tests["baseline"]["BLEU"]["difference"] == pytest.approx(-float(plain[3].split()[1]), abs=0.006)
    # without it, the table is as before: one difference column
    header, rows = comparison_rows(spec, results, str(tmp_path))
    assert [h for h in header if h.startswith("vs ")] == [difference_header("baseline", "test")]
    # a run of two seeds says under its table that it cannot establish a difference
    assert comparison_table(spec, results, str(tmp_path)).endswith("\n" + FEW_SEEDS)


def test_students_are_named_as_commands_name_them():
    spec = load_spec(os.path.join(REPO, "specs", "quickstart.yaml"), ["variants={plain: {distill.alpha: 0.0}}"])
    assert [student_stage(spec, n) for n in ("student", "train", "plain", "baseline")] == [
        "train",
        "train",
        "plain",
        "baseline",
    ]
    with pytest.raises(StageError) as raised:
        student_stage(spec, "plian")
    assert (
        str(raised.value) == "'plian' is not a student of run 'quickstart'; its students are baseline, plain, student"
    )


def test_a_teacher_scored_on_the_same_split_gives_the_gap_each_student_closes(monkeypatch, data_dir):
    """Teacher 40, baseline 30 (mean of 29 and 31), student 36: it closes 60% of the gap."""
    spec = load_spec(os.path.join(REPO, "specs", "quickstart.yaml"), ["train.seeds=[1,2]"])
    teacher = {"label": "teacher", "scores": {"test": {"score": 40.0}}, "parameters": 1000, "steps": 5}
    monkeypatch.setattr(type(registry.lookup("method", spec.method)), "teacher_row", lambda *_: teacher)
    train = {"method": "soft_target", "steps": 1, "seconds": 1}
    results = {"baseline": train, "baseline-s2": train, "train": train, "train-s2": train}
    for stage, score in (("baseline_evaluate", 29.0), ("baseline_evaluate-s2", 31.0), ("evaluate", 35.0)):
        results[stage] = {"test": {"metric": "BLEU", "score": score}}
    results["evaluate-s2"] = {"test": {"metric": "BLEU", "score": 37.0}}
    header, rows = comparison_rows(spec, results)
    column = header.index("teacher-baseline gap closed, test")
    assert [r[0] for r in rows] == ["teacher", "baseline", "soft_target"]
    assert [r[column] for r in rows] == ["-", "-", "60%"]
    teacher["scores"]["test"]["score"] = 30.0  # level with the baseline: no gap to close
    header, _ = comparison_rows(spec, results)
    assert "teacher-baseline gap closed, test" not in header
