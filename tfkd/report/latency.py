"""Batch-1 latency of each student: the student rebuilt from its train stage's files
(:func:`tfkd.stages.load_student`), the task's :meth:`~tfkd.tasks.Task.predictor` called on one
input at a time. Every student is loaded and warmed up first (each input predicted once:
tracing, and a graph per input shape); then the students take turns: in each of ``repeats``
rounds over the inputs every student predicts each input once, the order of the students
rotating from input to input, so that a machine that slows down or speeds up during the measurement weighs on all
of them alike. A student's latency is the median of its timings, its spread their
interquartile range. Students whose files are missing are skipped with a note, before any
TensorFlow work."""

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
    """Set ``latency_ms`` and ``latency_iqr_ms`` (or ``latency_note``) of each of ``students``
    by timing its predictor on each of ``inputs`` alone, the students interleaved
    (``context``: the run's)."""
    runnable = []
    for student in students:
        problem = missing_files(student)
        if problem:
            student.latency_note = f"not measured: {problem}"
        else:
            runnable.append(student)
    predictors = _warm_predictors(context, runnable, inputs)
    with _no_progress_bars():
        timings = time_interleaved(predictors, inputs, repeats)
    for student in runnable:
        if student.name not in timings:
            continue
        times = timings[student.name]
        quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
        student.latency_ms = 1000 * quartiles[1]
        student.latency_iqr_ms = (1000 * quartiles[0], 1000 * quartiles[2])
        log.info(
            "report: %s: %.1f ms a prediction (batch 1, median of %d, interquartile %.1f-%.1f)",
            student.name,
            student.latency_ms,
            len(times),
            *student.latency_iqr_ms,
        )


def _warm_predictors(context, students, inputs):
    """``{student name: predict}`` of the students that load, each input predicted once (not
    timed); a student that does not load gets a ``latency_note`` instead."""
    if not students:
        return {}
    from tfkd.errors import DataError, StageError
    from tfkd.stages import load_student

    predictors = {}
    for student in students:
        view = context.with_spec(student.spec)
        try:
            predict = view.task.predictor(view, load_student(view, student.train_stage))
            with _no_progress_bars():
                for line in inputs:
                    predict([line])
        except (DataError, StageError, OSError, ValueError) as e:
            student.latency_note = f"not measured: {e}"
            continue
        predictors[student.name] = predict
    return predictors


def time_interleaved(predictors, inputs, repeats=REPEATS, clock=time.perf_counter):
    """``{name: [seconds of each prediction]}``: ``repeats`` rounds over the inputs, every
    predictor predicting each input alone in turn, their order rotating by one from input to
    input."""
    names = list(predictors)
    timings = {name: [] for name in names}
    turn = 0
    for _ in range(repeats):
        for line in inputs:
            shift, turn = turn % max(len(names), 1), turn + 1
            for name in names[shift:] + names[:shift]:
                start = clock()
                predictors[name]([line])
                timings[name].append(clock() - start)
    return timings


__all__ = ["measure", "missing_files", "time_interleaved"]
