"""A report across runs that differ in one spec setting: a learning curve. Each run trains the
same students (a baseline and the distilled ones) with one setting changed, typically the
number of training pairs (``--set data.train_limit=2000 --set name=quickstart_2k``); the page
plots each student's test metric (mean and standard deviation over the run's seeds) and its
gain over the baseline (the sentence-cluster bootstrap over every seed's test outputs, with
its 95% interval, and the seed-level test; Holm-adjusted over the table's rows) against that
setting.

    from tfkd.report.across_runs import build_curve_report
    path = build_curve_report(["runs/qs_2k", "runs/qs_5k", "runs/qs_10k"], "reports/size")

``tfkd report RUN RUN [RUN ...] -o DIR [--by KEY]`` writes it. The setting is the one spec key
whose value differs between the runs (``by`` names it when several do); runs are placed along
it by its value. Nothing here names a method or a task.
"""

import datetime
import os
import statistics

from tfkd.comparison import difference_cell, score_cell
from tfkd.errors import StageError
from tfkd.report import html
from tfkd.significance import with_holm

PAGE = "index.html"
# keys that say nothing about what was trained (where a run is, its report) or that a run
# replicates over (its seeds: each run's table pools them)
IGNORED = ("name", "run_dir", "report", "train.seed", "train.seeds")


def _flat(value, prefix=""):
    """``{dotted key: leaf value}`` of a nested dict (lists are leaves)."""
    if isinstance(value, dict):
        items = {}
        for key, inner in value.items():
            items.update(_flat(inner, f"{prefix}{key}."))
        return items
    return {prefix[:-1]: value}


def _ignored(key):
    return any(key == i or key.startswith(i + ".") for i in IGNORED)


def varying_settings(specs):
    """``{dotted key: [value per spec]}`` of the settings whose values are not all equal."""
    flats = [{k: v for k, v in _flat(s.model_dump()).items() if not _ignored(k)} for s in specs]
    keys = sorted(set().union(*flats))
    return {k: [f.get(k) for f in flats] for k in keys if any(f.get(k) != flats[0].get(k) for f in flats)}


def curve_setting(specs, run_dirs, by=None):
    """``(key, [value per run])``: the setting the runs are placed along; a
    :class:`~tfkd.errors.StageError` when it cannot be told (one run, no setting differs,
    several do and ``by`` names none of them, a run without it)."""
    if len(specs) < 2:
        raise StageError("a report across runs needs two runs or more")
    varying = varying_settings(specs)
    if by is not None:
        flats = [_flat(s.model_dump()) for s in specs]
        missing = [d for d, f in zip(run_dirs, flats) if by not in f]
        if missing:
            raise StageError(f"--by {by}: no such spec key in {missing[0]}")
        values = [f[by] for f in flats]
        if len(set(map(repr, values))) < len(values):
            raise StageError(f"--by {by}: two runs have the same value ({', '.join(map(repr, values))})")
        return by, values
    if not varying:
        raise StageError(f"the runs {', '.join(run_dirs)} have the same settings: nothing to place them along")
    if len(varying) > 1:
        raise StageError(f"the runs differ in {', '.join(varying)}: name the one to place them along with --by KEY")
    ((key, values),) = varying.items()
    return key, values


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, repr(value))


def run_points(contents):
    """``{student: {"scores": [test score per seed], "metric": name, "gain": paired test
    result or None, "label": its name in the run's table}}`` of one run's students (by their
    first seed's train stage), and the tested split."""
    from tfkd.comparison import paired_differences, student_label

    split, tests = paired_differences(contents.spec, contents.results, contents.run_dir)
    points = {}
    for student in contents.students:
        scored = student.score(split) if split else student.score()
        if scored is None:
            continue
        family = student.family
        label = student_label(contents.spec, contents.results, family)
        point = points.setdefault(family, {"scores": [], "metric": scored[1], "gain": None, "label": label})
        point["scores"].append(scored[2])
    for family, test in tests.items():
        if family in points:
            # the corpus metric the run names first (BLEU before chrF; accuracy before F1)
            points[family]["gain"] = next(iter(test.values()))
    return split, points


def build_curve_report(run_dirs, out_dir, by=None):
    """Write the page across ``run_dirs`` into ``out_dir``; returns the page's path."""
    from tfkd.report.contents import read_run

    runs = [read_run(d) for d in run_dirs]
    key, values = curve_setting([r.spec for r in runs], run_dirs, by)
    order = sorted(range(len(runs)), key=lambda i: _sort_key(values[i]))
    runs, values = [runs[i] for i in order], [values[i] for i in order]
    measured = [run_points(r) for r in runs]
    named = {}  # every run's students, in order, and their names in each run's table
    for _, points in measured:
        for student, point in points.items():
            named.setdefault(student, set()).add(point["label"])
    # one line per student across the runs: a student named differently by two runs (its loss
    # weights are the setting the runs vary) goes by its stage's name
    labels = {s: next(iter(names)) if len(names) == 1 else s for s, names in named.items()}
    metric = next((p["metric"] for _, points in measured for p in points.values()), "score")
    os.makedirs(out_dir, exist_ok=True)

    rows = _curve_rows(values, runs, measured, labels)
    figure = _draw(out_dir, key, values, labels, measured, metric)
    table = html.table(
        ["value of " + key, "run", "student", "seeds", f"{metric} (mean ± std)", "gain over baseline"], rows
    )
    sections = [
        (
            "Learning curve",
            html.paragraph(
                f"{len(runs)} runs placed along {key}. Gains: each student against the baseline of "
                "its own run over every seed both finished: the difference, its 95% interval and "
                "two-sided p (test sentences resampled as clusters of their seeds), the per-seed "
                "differences and the seed-level p (paired t), Holm-adjusted p-values over the "
                "table's rows in brackets; * established (both adjusted p under 0.05)."
            )
            + table
            + (html.figure(figure, f"{metric} and the gain over the baseline against {key}") if figure else ""),
        ),
        ("Runs", html.bullet_list([f"{r.spec.name}: {r.run_dir} ({key} = {v})" for r, v in zip(runs, values)])),
    ]
    from tfkd import __version__

    intro = html.paragraph(
        f"{len(runs)} runs of task {runs[0].spec.task}, method {runs[0].spec.method} · report written "
        f"{datetime.datetime.now().isoformat(timespec='seconds')} by tfkd {__version__}"
    ).replace("<p>", '<p class="meta">', 1)
    unfinished = [r.spec.name for r in runs if not r.finished]
    if unfinished:
        intro += html.note(f"Not finished: {', '.join(unfinished)} (what they lack is missing below).")
    path = os.path.join(out_dir, PAGE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(html.page(f"Across runs: {key}", intro, sections))
    os.replace(path + ".tmp", path)
    return path


def _curve_rows(values, runs, measured, labels):
    """The table's rows: each run's students, their scores and gains (Holm-adjusted over all)."""
    rows = []
    gains = [point["gain"] for _, points in measured for point in points.values() if point and point["gain"]]
    adjusted = {id(gain): holm for gain, holm in zip(gains, with_holm(gains))}
    for value, run, (_, points) in zip(values, runs, measured):
        for student in labels:
            point = points.get(student)
            if point is None:
                rows.append([str(value), run.spec.name, labels[student], "-", "not evaluated", "-"])
                continue
            gain = adjusted.get(id(point["gain"]))
            rows.append(
                [
                    str(value),
                    run.spec.name,
                    labels[student],
                    str(len(point["scores"])),
                    score_cell(point["scores"]),
                    difference_cell({gain["metric"]: gain}) if gain else "-",
                ]
            )
    return rows


def _draw(out_dir, key, values, labels, measured, metric):
    """Two panels: each student's metric (mean, std bars) and each distilled student's gain
    over the baseline (95% interval bars) against the setting, ``labels`` naming them; the
    file's name."""
    from tfkd.report import figures

    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    xs = list(values) if numeric else list(range(len(values)))
    figure, ((left, right),) = figures.new_figure(width=10.0, height=4.0, columns=2)
    for index, student in enumerate(labels):
        points = [(x, p[student]) for x, (_, p) in zip(xs, measured) if student in p]
        if points:
            means = [statistics.mean(p["scores"]) for _, p in points]
            stds = [statistics.stdev(p["scores"]) if len(p["scores"]) > 1 else 0.0 for _, p in points]
            left.errorbar(
                [x for x, _ in points],
                means,
                yerr=stds,
                label=labels[student],
                color=figures.colour(index),
                marker="o",
                capsize=3,
            )
        gains = [(x, p["gain"]) for x, p in points if p["gain"]]
        if gains:
            diffs = [g["difference"] for _, g in gains]
            below = [g["difference"] - g["ci_low"] for _, g in gains]
            above = [g["ci_high"] - g["difference"] for _, g in gains]
            style = {"label": labels[student], "color": figures.colour(index), "marker": "o", "capsize": 3}
            right.errorbar([x for x, _ in gains], diffs, yerr=[below, above], **style)
    right.axhline(0.0, color="#777", linewidth=0.8)
    for axes, title, ylabel in (
        (left, f"test {metric} (mean ± std over seeds)", metric),
        (right, "gain over the baseline (95% interval)", f"{metric} difference"),
    ):
        axes.set_title(title, fontsize=9)
        axes.set_xlabel(key, fontsize=8)
        axes.set_ylabel(ylabel, fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        if numeric and len(xs) > 2 and min(xs) > 0 and max(xs) >= 4 * min(xs):
            axes.set_xscale("log")
            axes.minorticks_off()
            axes.set_xticks(xs)
            axes.set_xticklabels([f"{x:,}" for x in xs])
        elif not numeric:
            axes.set_xticks(xs)
            axes.set_xticklabels([str(v) for v in values], fontsize=7)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)
    return figures.save(figure, out_dir, f"curve-{key}")


__all__ = ["build_curve_report", "curve_setting", "run_points", "varying_settings"]
