"""``tfkd.report.latency``: a student without its files is not timed, and says why, before any
TensorFlow work; one with them is timed at batch 1 (the real run in ``test_report.py``); the
students take turns, so two copies of one model measure alike on a machine whose speed drifts."""

import statistics

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


class DriftingMachine:
    """A clock and a model whose every prediction costs a little more than the one before (a
    machine getting busier while the report measures)."""

    def __init__(self):
        self.now, self.calls = 0.0, 0

    def clock(self):
        return self.now

    def model(self, lines):
        self.calls += 1
        self.now += 0.010 * (1 + 0.002 * self.calls)


def test_two_copies_of_one_model_measure_alike_under_drift():
    machine = DriftingMachine()
    inputs = [f"satz {i}" for i in range(24)]
    timings = latency.time_interleaved({"a": machine.model, "b": machine.model}, inputs, repeats=3, clock=machine.clock)
    assert [len(t) for t in timings.values()] == [72, 72]
    a, b = (statistics.median(t) for t in timings.values())
    assert abs(a - b) / a < 0.02
    # one after the other, as latency was measured before, the second copy seems slower
    machine = DriftingMachine()
    first = latency.time_interleaved({"a": machine.model}, inputs, repeats=3, clock=machine.clock)["a"]
    second = latency.time_interleaved({"b": machine.model}, inputs, repeats=3, clock=machine.clock)["b"]
    assert (statistics.median(second) - statistics.median(first)) / statistics.median(first) > 0.1
