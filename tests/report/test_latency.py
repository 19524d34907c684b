"""``tfkd.report.latency``: a student without its files is not timed, and says why, before any
TensorFlow work; one with them is timed at batch 1 (the real run in ``test_report.py``)."""

from report_runs import synthetic_run

from tfkd.report import latency
from tfkd.report.contents import read_run


def test_students_without_their_files_are_skipped_with_a_note(tmp_path):
    contents = read_run(str(synthetic_run(tmp_path, finished=False)))
    baseline, student = contents.students
    (tmp_path / "runs" / "handmade" / "baseline" / "student.json").write_text("{}")
    latency.measure(contents.context, contents.students, ["ein satz ."])
    assert baseline.latency_ms is None and student.latency_ms is None
    assert baseline.latency_note.startswith("not measured: student.weights.h5 not in ")
    assert student.latency_note == "not measured: its train stage (train) has not finished"
