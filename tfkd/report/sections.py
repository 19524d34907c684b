"""The generic sections of a run's report: the run's state, the comparison table, training
curves, the teacher, and size and speed against quality. Each is a
:class:`tfkd.tasks.base.ReportSection` built from a :class:`tfkd.report.contents.RunContents`;
none names a method or a task (it asks them: :meth:`tfkd.methods.Method.teacher_row`)."""

import json
import os

from tfkd.report import curves as curves_lib
from tfkd.report import figures
from tfkd.report.contents import FINISHED, PARTIAL_STATE
from tfkd.report.html import bullet_list, code, escape, note, number, paragraph, pre, table
from tfkd.runner import LOG_FILE
from tfkd.tasks.base import ReportSection

CACHE_MANIFEST = "manifest.json"  # a top-K teacher cache's (tfkd.teachers.topk_cache)


def status_section(contents):
    """Every stage the spec asks for (and any other on disk): finished when, partial, or not
    started."""
    rows = []
    for stage in contents.stages:
        if not stage.requested and stage.state != FINISHED and stage.state != PARTIAL_STATE:
            continue
        seconds = (stage.results or {}).get("seconds")
        state = stage.state
        if stage.state == PARTIAL_STATE:
            state = "partial (running, stopped or killed; the same tfkd run resumes it)"
        rows.append(
            [
                stage.name,
                stage.role or "-",
                state,
                stage.finished or "-",
                number(seconds, 1) if seconds is not None else "-",
                "yes" if stage.requested else "no",
            ]
        )
    html = table(["stage", "role", "state", "finished", "seconds", "asked for by the spec"], rows, numeric={4})
    return ReportSection("Stages", html)


def comparison_section(contents, against=None):
    """The run's comparison table (:func:`tfkd.comparison.comparison_rows`), as it gives it;
    ``against``: a second student (train stage) every other one is tested against."""
    from tfkd.comparison import comparison_rows, score_lines

    # paired tests read the outputs
    found = comparison_rows(contents.spec, contents.results, contents.run_dir, against=against)
    if found:
        header, rows = found
        return ReportSection("Comparison", table(header, rows))
    lines = score_lines(contents.spec, contents.results)
    evaluated = [s.label for s in contents.students if s.evaluate_results]
    waiting = [s.evaluate_stage for s in contents.students if not s.evaluate_results]
    html = note(
        f"No comparison table: it needs two evaluated students; {len(evaluated)} "
        f"{'is' if len(evaluated) == 1 else 'are'} evaluated"
        + (f" (not finished: {', '.join(waiting)})" if waiting else "")
        + "."
    )
    return ReportSection("Comparison", html + (pre("\n".join(lines)) if lines else ""))


def curves_section(contents, out_dir):
    """One figure per student (loss terms, validation metric, learning rate, tokens/s) and
    one comparing them."""
    log_path = os.path.join(contents.run_dir, LOG_FILE)
    parts, shown, figure_files = [], [], []
    families = list(dict.fromkeys(s.family for s in contents.students))
    for student in contents.students:
        found, where = curves_lib.stage_curves(
            student.train_dir, student.partial_train_dir, log_path, student.train_stage
        )
        if not found:
            parts.append(note(f"{student.label} ({student.train_stage}): no training curves: {_why_not(student)}"))
            continue
        unfinished = student.train_dir is None
        title = f"{student.label} ({student.train_stage})" + (", unfinished: the steps so far" if unfinished else "")
        file_name = curves_lib.stage_figure(found, title, out_dir, f"curves-{student.train_stage}")
        figure_files.append((file_name, f"{title}: from {_relative(where, contents.run_dir)}"))
        style = {"color": figures.colour(families.index(student.family))}
        shown.append((student.label, found, style | ({"linestyle": ":"} if student.seed is not None else {})))
    comparison = curves_lib.comparison_figure(shown, out_dir)
    if comparison:
        figure_files.insert(0, (comparison, "training loss and validation metric of every student"))
    if not figure_files and not parts:
        parts.append(note("No students in this run."))
    return ReportSection("Training curves", "".join(parts), figure_files)


def _why_not(student):
    if student.train_dir is None and student.partial_train_dir is None:
        return f"stage {student.train_stage} has not started"
    return "its folder holds no TensorBoard events and the log no step lines"


def _relative(path, root):
    return os.path.relpath(path, root) if path and path.startswith(root) else path


def teacher_section(contents, out_dir):
    """The method's own stages (a teacher's fine-tuning, its cache, ...): the method's teacher
    row, each stage's results, a top-K cache's settings and the probability mass it keeps (when
    its manifest records it), and the curves of those that trained."""
    method_stages = [s for s in contents.stages if s.role == "method" and (s.requested or s.state != "not started")]
    if not method_stages:
        return ReportSection("Teacher", paragraph(f"Method {contents.spec.method} runs no stages of its own."))
    parts, figure_files = [], []
    row = contents.context.method.teacher_row(contents.context, contents.results)
    if row:
        header = ["teacher", *[f"{split} {s.get('metric', 'score')}" for split, s in row["scores"].items()]]
        header += ["parameters", "steps", "seconds"]
        cells = [row["label"], *[number(s.get("score")) for s in row["scores"].values()]]
        cells += [number(row.get("parameters")), number(row.get("steps")), number(row.get("seconds"), 0)]
        parts.append(table(header, [cells]))
    log_path = os.path.join(contents.run_dir, LOG_FILE)
    for stage in method_stages:
        parts.append(f"<h3>{escape(stage.name)}</h3>")
        if stage.state != FINISHED:
            parts.append(note(f"stage {stage.name}: {stage.state}; its results are missing"))
        else:
            parts.append(_results_table(stage.results))
        if stage.directory:
            parts.append(_cache_note(stage.directory))
            found, where = curves_lib.stage_curves(
                stage.directory if stage.state == FINISHED else None,
                stage.directory if stage.state != FINISHED else None,
                log_path,
                stage.name,
            )
            if found:
                file_name = curves_lib.stage_figure(found, stage.name, out_dir, f"curves-{stage.name}")
                figure_files.append((file_name, f"{stage.name}: from {_relative(where, contents.run_dir)}"))
    return ReportSection("Teacher", "".join(parts), figure_files)


def _flat(results, prefix=""):
    for key, value in results.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        elif isinstance(value, (list, tuple)):
            yield f"{prefix}{key}", ", ".join(map(str, value[:8])) + (" ..." if len(value) > 8 else "")
        else:
            yield f"{prefix}{key}", value


def _results_table(results):
    rows = [[key, f"{value:.4g}" if isinstance(value, float) else number(value)] for key, value in _flat(results)]
    return table(["result", "value"], rows, numeric={1}) if rows else paragraph("(no results recorded)")


def _cache_note(directory):
    path = os.path.join(directory, CACHE_MANIFEST)
    if not os.path.isfile(path):
        return ""
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        return note(f"{path}: unreadable ({e})")
    if "top_k" not in manifest:
        return ""
    kept = {k: v for k, v in manifest.items() if "mass" in k}
    settings = {k: manifest[k] for k in ("top_k", "temperature", "examples", "bytes") if k in manifest}
    html = paragraph(
        "Top-K cache: "
        + ", ".join(f"{k} {number(v, 3) if isinstance(v, float) else number(v)}" for k, v in settings.items())
    )
    if kept:
        rows = [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in kept.items()]
        return html + table(["probability mass the top-K keeps", "value"], rows)
    return html + note(f"Its {CACHE_MANIFEST} does not record the probability mass the top-{manifest['top_k']} keeps.")


def size_speed_section(contents, out_dir, latency_html=""):
    """Trainable parameters and batch-1 latency of each student against its test metric: a
    table and a scatter plot (``latency_html``: how latency was measured, or why not)."""
    rows, by_size, by_latency = [], [], []
    families = list(dict.fromkeys(s.family for s in contents.students))
    metric_name = None
    for student in contents.students:
        score = student.score()
        trainable = (student.train_results or {}).get("trainable_parameters")
        frozen = (student.train_results or {}).get("frozen_parameters")
        latency = student.latency_note or "-"
        if student.latency_ms is not None:
            latency = f"{student.latency_ms:.1f}"
            if student.latency_iqr_ms:
                latency += " ({:.1f}-{:.1f})".format(*student.latency_iqr_ms)
        rows.append(
            [
                student.label,
                number(trainable),
                number(frozen),
                latency,
                f"{score[0]} {score[1]} {score[2]:.2f}" if score else "not evaluated",
            ]
        )
        if not score:
            continue
        metric_name = metric_name or f"{score[0]} {score[1]}"
        index = families.index(student.family)
        if trainable:
            by_size.append((student.label, trainable, score[2], index))
        if student.latency_ms is not None:
            by_latency.append((student.label, student.latency_ms, score[2], index))
    header = ["student", "trainable params", "frozen params", "latency ms (batch 1; interquartile range)", "quality"]
    html = table(header, rows)
    html += latency_html
    if not by_size and not by_latency:
        return ReportSection(
            "Size and speed against quality", html + note("No student is both trained and evaluated yet: no plot.")
        )
    panels = [p for p in (by_size, by_latency) if p]
    figure, axes = figures.new_figure(4.5 * len(panels), 3.6, 1, len(panels), grid=True)
    axes = list(axes[0])
    if by_size:
        figures.labelled_scatter(axes.pop(0), by_size, "trainable parameters", metric_name, "size", log_x=True)
    if by_latency:
        figures.labelled_scatter(axes.pop(0), by_latency, "latency ms (batch 1)", metric_name, "speed")
    file_name = figures.save(figure, out_dir, "size-speed-quality")
    return ReportSection(
        "Size and speed against quality", html, [(file_name, f"{metric_name} against size and batch-1 latency")]
    )


def log_section(contents, lines=30):
    path = os.path.join(contents.run_dir, LOG_FILE)
    if not os.path.isfile(path):
        return ReportSection("Log", note(f"{LOG_FILE}: not in the run directory"))
    with open(path, encoding="utf-8", errors="replace") as f:
        tail = f.readlines()[-lines:]
    return ReportSection("Log", paragraph(f"The last {len(tail)} lines of {path}:") + pre("".join(tail)))


def spec_section(contents):
    from tfkd.runner import SPEC_FILE

    path = os.path.join(contents.run_dir, SPEC_FILE)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return ReportSection(
        "Spec",
        f"<details><summary>{code(SPEC_FILE)} (the spec of the last stage to finish)</summary>{pre(text)}</details>",
    )


def missing_list(contents):
    """``<ul>`` of the requested stages that have not finished (empty when none)."""
    return bullet_list(
        [
            f"{s.name}: {'partial (stopped, killed or still running)' if s.state == PARTIAL_STATE else 'not started'}"
            for s in contents.missing()
        ]
    )


__all__ = [
    "comparison_section",
    "curves_section",
    "log_section",
    "missing_list",
    "size_speed_section",
    "spec_section",
    "status_section",
    "teacher_section",
]
