"""A run's report: one HTML page (``index.html``) and the PNG figures it shows, in one folder
(default ``RUN/report/``) that can be opened, copied or attached as it is.

    from tfkd.report import build_report
    path = build_report("runs/quickstart")                # runs/quickstart/report/index.html
    path = build_report("runs/quickstart", "/tmp/r", latency=False)

The page holds the stages' state (what an unfinished run lacks, said plainly), the comparison
table (:mod:`tfkd.comparison`), each student's training curves (TensorBoard events, else the
log), the method's teacher stages (their results, a top-K cache's kept mass), trainable
parameters and measured batch-1 latency against the test metric, and the task's own sections
(:meth:`tfkd.tasks.Task.report`). ``tfkd report RUN`` writes it; ``tfkd run`` can at the end of
a run. Nothing here names a method or a task; importing this package imports no TensorFlow
(reading TensorBoard events and timing students do, when they happen).
"""

import contextlib
import datetime
import html as html_lib
import logging
import os
import re

from tfkd.report import html
from tfkd.report.contents import ReportStudent, RunContents, read_run
from tfkd.tasks.base import ReportSection, TaskReport

log = logging.getLogger("tfkd")

PAGE = "index.html"


def default_out_dir(run_dir):
    return os.path.join(run_dir, "report")


def build_report(run_dir, out_dir=None, latency=True, against=None):
    """Write the report of the run directory ``run_dir`` into ``out_dir`` (default
    ``run_dir/report``); returns the page's path. ``latency``: time each finished student's
    predictor at batch 1 (loads the students: TensorFlow work). ``against``: a student's name
    (``student``, a variant's, ``baseline``) the comparison also tests every other student
    against, beside the baseline. Raises :class:`~tfkd.errors.StageError` when ``run_dir`` is
    not a run directory or ``against`` names no evaluated student of it."""
    contents = read_run(run_dir)
    reference = _reference(contents, against) if against else None
    out_dir = os.path.abspath(out_dir or default_out_dir(run_dir))
    os.makedirs(out_dir, exist_ok=True)
    _remove_previous_figures(out_dir)

    task_part = _guarded("task sections", lambda: _task_report(contents, out_dir))
    latency_html = _measure_latency(contents, task_part, latency)

    from tfkd.report import sections

    built = [
        _guarded("Stages", lambda: sections.status_section(contents)),
        _guarded("Comparison", lambda: sections.comparison_section(contents, against=reference)),
        _guarded(
            "Size and speed against quality", lambda: sections.size_speed_section(contents, out_dir, latency_html)
        ),
        _guarded("Training curves", lambda: sections.curves_section(contents, out_dir)),
        _guarded("Teacher", lambda: sections.teacher_section(contents, out_dir)),
        *(task_part.sections if isinstance(task_part, TaskReport) else [task_part]),
        _guarded("Log", lambda: sections.log_section(contents)),
        _guarded("Spec", lambda: sections.spec_section(contents)),
    ]
    page = html.page(
        f"Run report: {contents.spec.name}",
        _intro(contents, sections.missing_list(contents)),
        [(section.title, _with_figures(section, out_dir)) for section in built],
    )
    path = os.path.join(out_dir, PAGE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(path + ".tmp", path)
    log.info("report: %s", path)
    return path


def _reference(contents, against):
    """The train stage of the student ``against`` names; a one-line error when it names none of
    the run's students, or one no seed has evaluated."""
    from tfkd.comparison import student_stage
    from tfkd.errors import StageError

    stage = student_stage(contents.spec, against)
    if not any(s.family == stage and s.evaluate_results for s in contents.students):
        raise StageError(f"--against {against}: no seed of that student is evaluated in {contents.run_dir}")
    return stage


def _remove_previous_figures(out_dir):
    """Delete the figures a previous page in ``out_dir`` showed (and only those), so that a
    report written again holds no figure of a student or section that is gone."""
    path = os.path.join(out_dir, PAGE)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        shown = re.findall(r'<img src="([^"/\\]+)"', f.read())
    for name in set(shown):
        with contextlib.suppress(OSError):
            os.remove(os.path.join(out_dir, html_lib.unescape(name)))


def _task_report(contents, out_dir):
    context = contents.context
    found = context.task.report(context, contents.students, out_dir)
    if not isinstance(found, TaskReport):
        raise TypeError(f"task {contents.spec.task}: report() returned {type(found).__name__}, not a TaskReport")
    found.sections = [s if isinstance(s, ReportSection) else ReportSection(*s) for s in found.sections]
    return found


def _measure_latency(contents, task_part, wanted):
    """Time the students when ``wanted`` and the task gave inputs; the page's words on it."""
    if not wanted:
        return html.note("Latency not measured (--no-latency).")
    inputs = task_part.sample_inputs if isinstance(task_part, TaskReport) else None
    if not inputs:
        why = task_part.inputs_note if isinstance(task_part, TaskReport) else None
        return html.note(f"Latency not measured: the task gave no test inputs to time{f' ({why})' if why else ''}.")
    from tfkd.report import latency

    def measure():
        latency.measure(contents.context, contents.students, inputs)

    failed = _guarded("latency", measure)
    if failed is not None:
        return failed.html
    return html.paragraph(
        f"Latency: the median over {len(inputs)} test inputs (and the interquartile range), each "
        f"predicted alone (batch 1) {latency.REPEATS} times after every student's untimed first "
        "pass, the students taking turns round by round so that a change in the machine's load "
        f"weighs on all alike; on the machine that wrote this report ({os.cpu_count()} CPUs "
        "visible), with the students' decoding settings."
    )


def _guarded(title, build):
    """``build()``, or a section saying why it could not be built (the rest of the page is
    still written; the traceback goes to the debug log)."""
    try:
        return build()
    except Exception as e:
        log.warning("report: %s could not be built: %s: %s", title, type(e).__name__, e)
        log.debug("report: %s", title, exc_info=True)
        return ReportSection(title, html.note(f"This section could not be built: {type(e).__name__}: {e}"))


def _with_figures(section, out_dir):
    parts = [section.html]
    for item in section.figures:
        name, caption = item if isinstance(item, (tuple, list)) else (item, None)
        relative = os.path.relpath(name, out_dir) if os.path.isabs(name) else name
        if os.path.isfile(os.path.join(out_dir, relative)):
            parts.append(html.figure(relative.replace(os.sep, "/"), caption))
        else:
            parts.append(html.note(f"figure {relative}: not written"))
    return "\n".join(parts)


def _intro(contents, missing):
    from tfkd import __version__

    spec = contents.spec
    meta = html.paragraph(
        f"Run {contents.run_dir} · task {spec.task} · method {spec.method} · "
        f"{len(contents.students)} student{'s' if len(contents.students) != 1 else ''} · "
        f"report written {datetime.datetime.now().isoformat(timespec='seconds')} by tfkd {__version__}"
    ).replace("<p>", '<p class="meta">', 1)
    if contents.finished:
        return meta + '<p class="status-ok">Every stage the spec asks for has finished.</p>'
    return (
        meta
        + html.note(
            "This run is not finished: the stages below have not finished, so what they would "
            "give is missing from this page (each section says what it lacks)."
        )
        + missing
    )


__all__ = ["PAGE", "ReportSection", "ReportStudent", "RunContents", "TaskReport", "build_report", "default_out_dir"]
