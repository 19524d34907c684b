"""Batch-1 latency of each student: the student rebuilt from its train stage's files
(:func:`tfkd.stages.load_student`), the task's :meth:`~tfkd.tasks.Task.predictor` called on one
input at a time. Every input is predicted once first (tracing, and a graph per input shape),
then each is timed ``repeats`` times; the median is the student's latency. Students whose
files are missing are skipped with a note, before any TensorFlow work."""

import contextlib
import logging
import os
import statistics
import time

from tfkd.progress import QUIET_ENV

log = logging.getLogger("tfkd")

STUDENT_FILES = ("student.json", "student.weights.h5")  # what tfkd.stages.save_student writes
REPEATS = 3


@contextlib.contextmanager
def _no_progress_bars():
    previous = os.environ.get(QUIET_ENV)
    os.environ[QUIET_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(QUIET_ENV, None)
        else:
            os.environ[QUIET_ENV] = previous


def missing_files(student):
    """What a student lacks for its latency to be measured (``None``: nothing)."""
    if student.train_dir is None:
        return f"its train stage ({student.train_stage}) has not finished"
    absent = [f for f in STUDENT_FILES if not os.path.isfile(os.path.join(student.train_dir, f))]
    if absent:
        return f"{', '.join(absent)} not in {student.train_dir}"
    return None


def measure(context, students, inputs, repeats=REPEATS):
    """Set ``latency_ms`` (or ``latency_note``) of each of ``students`` by timing its
    predictor on each of ``inputs`` alone (``context``: the run's)."""
    runnable = []
    for student in students:
        problem = missing_files(student)
        if problem:
            student.latency_note = f"not measured: {problem}"
        else:
            runnable.append(student)
    if not runnable:
        return
    from tfkd.errors import DataError, StageError
    from tfkd.stages import load_student

    for student in runnable:
        view = context.with_spec(student.spec)
        try:
            model = load_student(view, student.train_stage)
            predict = view.task.predictor(view, model)
            with _no_progress_bars():
                for line in inputs:  # traced once per input shape, not timed
                    predict([line])
                times = []
                for _ in range(repeats):
                    for line in inputs:
                        start = time.perf_counter()
                        predict([line])
                        times.append(time.perf_counter() - start)
        except (DataError, StageError, OSError, ValueError) as e:
            student.latency_note = f"not measured: {e}"
            continue
        student.latency_ms = 1000 * statistics.median(times)
        log.info(
            "report: %s: %.1f ms a prediction (batch 1, median of %d)", student.name, student.latency_ms, len(times)
        )


__all__ = ["measure", "missing_files"]
