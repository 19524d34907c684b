"""``tfkd.report.contents``: a run directory read for its report, files only: each stage's
state, the students (extra seeds' copies too) and what an unfinished run lacks."""

import subprocess
import sys

from helpers import REPO
from report_runs import synthetic_run

from tfkd.report.contents import FINISHED, NOT_STARTED, PARTIAL_STATE, read_run


def test_a_finished_run(tmp_path):
    contents = read_run(str(synthetic_run(tmp_path)))
    assert contents.finished and contents.missing() == []
    states = {s.name: (s.role, s.state, s.requested) for s in contents.stages}
    assert states["teacher_cache"] == ("method", FINISHED, True)
    assert states["export"] == ("export", NOT_STARTED, False)  # not asked for: not missing
    assert [s.label for s in contents.students] == ["baseline", "student"]
    student = contents.students[1]
    assert (student.role, student.train_stage, student.evaluate_stage) == ("student", "train", "evaluate")
    assert student.score() == ("test", "BLEU", 40.0) and student.score("valid") is None
    assert student.train_results["trainable_parameters"] == 123456
    assert contents.results["evaluate"]["test"]["score"] == 40.0


def test_an_unfinished_run(tmp_path):
    contents = read_run(str(synthetic_run(tmp_path, finished=False)))
    assert not contents.finished
    assert [(s.name, s.state) for s in contents.missing()] == [("train", PARTIAL_STATE), ("evaluate", NOT_STARTED)]
    student = contents.students[1]
    assert student.train_dir is None and student.partial_train_dir.endswith("train.partial")
    assert student.evaluate_dir is None and student.score() is None


def test_extra_seeds_are_students_after_their_first_seed(tmp_path):
    contents = read_run(str(synthetic_run(tmp_path, seeds=(3, 2))))
    names = [s.name for s in contents.students]
    assert names == ["baseline", "baseline-s2", "baseline-s3", "train", "train-s2", "train-s3"]
    seeded = contents.students[4]
    assert (seeded.seed, seeded.family, seeded.label, seeded.evaluate_stage) == (
        2,
        "train",
        "student (seed 2)",
        "evaluate-s2",
    )
    order = [s.name for s in contents.stages]
    assert order.index("train-s2") < order.index("train-s3") and order.index("evaluate") < order.index("train-s2")
    assert {s.role for s in contents.stages if s.name.endswith("-s2")} == {"train", "evaluate"}


def test_the_report_folder_and_stale_folders_are_not_stages(tmp_path):
    run = synthetic_run(tmp_path)
    (run / "report").mkdir()
    (run / "train.stale-123").mkdir()
    names = [s.name for s in read_run(str(run)).stages]
    assert "report" not in names and not any("stale" in n for n in names)


def test_reading_a_run_imports_no_tensorflow(tmp_path):
    run = synthetic_run(tmp_path)
    code = (
        "import sys; from tfkd.report.contents import read_run; import tfkd.report; "
        f"contents = read_run({str(run)!r}); print(len(contents.students), 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "False"]


def test_a_variant_the_stages_leave_out_is_no_student_on_any_seed(tmp_path):
    run = synthetic_run(tmp_path, seeds=(2,))
    spec = (run / "spec.yaml").read_text()
    spec = spec.replace("train: {steps: 40, log_every: 10}", "train: {steps: 40, log_every: 10, seeds: [1, 2]}")
    (run / "spec.yaml").write_text(spec + "variants:\n  wide: {student.hidden_dim: 64}\n")
    contents = read_run(str(run))
    assert "wide-s2" in {s.name for s in contents.stages}  # in the plan, only not asked for
    names = [s.name for s in contents.students]
    assert names == ["baseline", "baseline-s2", "train", "train-s2"]
