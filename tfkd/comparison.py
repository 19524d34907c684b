"""The students one run trained (a baseline, the spec's variants, the main one), side by side:
their scores, then a table of metric per split (mean and standard deviation over
``train.seeds``), the difference to the baseline on the test split with its 95% confidence
interval and two-sided p (test sentences resampled as clusters of their seeds), the per-seed
differences and the seed-level p (the task's :meth:`~tfkd.tasks.Task.paired_test`, see
:mod:`tfkd.significance`), Holm-adjusted over the table's students (``*``: established, both
adjusted p under 0.05), decoder, trainable parameters, steps and wall time. ``tfkd run`` prints both after a run.

Compute, then render::

    table = comparison_rows(spec, results, run_dir)   # None with fewer than two students
    if table:
        print(render_table(*table))

``results`` is ``{stage: its results}`` as :meth:`tfkd.runner.Runner.run` returns them. Importing
this module imports neither TensorFlow nor a method or a task.
"""

import os
import statistics

from tfkd.plan import BASELINE, MAIN


def compared_students(spec):
    """``(train stage, evaluate stage)`` of every student the run's plan trains: the baseline,
    the variants, the main one (the stages of its first seed; :meth:`tfkd.plan.RunPlan.students`)."""
    from tfkd.plan import plan_run

    return [(student.name, student.evaluate) for student in plan_run(spec).students(spec)]


def seed_stages(spec, train, evaluate=None):
    """``[(seed, train stage, evaluate stage)]`` of the student of train stage ``train``, one
    per seed the plan trains it with (the first seed's stages keep their names)."""
    from tfkd.plan import plan_run

    student = next((s for s in plan_run(spec).students(spec) if s.name == train), None)
    return list(student.seeds) if student is not None else []


def _finished(spec, results, train, evaluate):
    """The ``(seed, train, evaluate)`` of a student whose stages are in ``results``."""
    return [s for s in seed_stages(spec, train, evaluate) if s[1] in results and s[2] in results]


MAIN_STUDENT = "student"  # how a user names the main student (its train stage is ``train``)


def student_stage(spec, name):
    """The train stage of the student a user names: ``baseline``, a variant's name, or
    ``student`` (the main one; its stage name ``train`` also works). A
    :class:`~tfkd.errors.StageError` listing the run's students otherwise."""
    from tfkd.errors import StageError

    stages = [train for train, _ in compared_students(spec)]
    stage = MAIN if name == MAIN_STUDENT else name
    if stage not in stages:
        named = ", ".join(MAIN_STUDENT if t == MAIN else t for t in stages)
        raise StageError(f"{name!r} is not a student of run {spec.name!r}; its students are {named}")
    return stage


def student_name(train):
    """How commands name the student of train stage ``train`` (the inverse of :func:`student_stage`)."""
    return MAIN_STUDENT if train == MAIN else train


def _evaluated(spec, results):
    """``(train stage, evaluate stage)`` of every compared student that some seed trained and
    evaluated (a run told to train only seeds 2 and 3 still compares them)."""
    return [(t, e) for t, e in compared_students(spec) if _finished(spec, results, t, e)]


def _trained(spec, results, train):
    """The results of the first seed's ``train`` stage that finished (``None`` if none did)."""
    return next((results[t] for _, t, _ in seed_stages(spec, train) if t in results), None)


def _scored_splits(spec, results, students):
    """The splits of ``spec.evaluate.splits`` that some seed of some student has a score on."""
    evaluated = [e for t, e0 in students for _, _, e in _finished(spec, results, t, e0)]
    return [s for s in spec.evaluate.splits if any("score" in (results[e].get(s) or {}) for e in evaluated)]


def score_cell(values):
    """``30.46 ± 0.45`` over seeds, ``30.46`` for one, ``-`` for none."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def tested_split(splits):
    """The split differences are tested on: ``test`` when scored, else the last one."""
    return "test" if "test" in splits else splits[-1]


def difference_header(reference, split):
    """The header of a column of :func:`difference_cell`s against student ``reference``."""
    return f"vs {reference}, {split} (95% CI, p; per-seed differences, seed p; Holm-adjusted p in brackets)"


def difference_cell(test):
    """``BLEU +0.41 [-0.12, +0.95] p=0.080 (0.160); seeds +0.30 +0.50 +0.43 p=0.021 (0.042)``
    per metric of a test's result (:mod:`tfkd.significance`): the difference, its 95% interval
    and two-sided p of the sentence-cluster bootstrap, the per-seed differences and the
    seed-level p, Holm-adjusted p-values in brackets when the table has them; ``*`` when the
    difference is established (both tests under 0.05, after Holm's adjustment when given)."""
    cells = []
    for name, t in test.items():
        holm = "p_holm" in t
        cell = f"{name} {t['difference']:+.2f} [{t['ci_low']:+.2f}, {t['ci_high']:+.2f}] p={t['p_value']:.3f}"
        cell += f" ({t['p_holm']:.3f})" if holm else ""
        differences = " ".join(f"{d:+.2f}" for d in t.get("seed_differences", []))
        if t.get("seed_p_value") is None:
            cell += f"; {t.get('seeds', 1)} seed{'s' if t.get('seeds', 1) != 1 else ''} {differences}: cannot judge"
        else:
            cell += f"; seeds {differences} p={t['seed_p_value']:.3f}"
            cell += f" ({t['seed_p_holm']:.3f})" if holm else ""
        cells.append(cell + ("*" if t.get("established_holm" if holm else "established") else ""))
    return "; ".join(cells)


def with_holm_columns(tests):
    """``{train stage: {metric: result}}`` with Holm's adjustment over the students, metric by
    metric (:func:`tfkd.significance.with_holm`)."""
    from tfkd.significance import with_holm

    adjusted = {train: {} for train in tests}
    for metric in dict.fromkeys(m for test in tests.values() for m in test):
        trains = [train for train, test in tests.items() if metric in test]
        for train, result in zip(trains, with_holm([tests[t][metric] for t in trains])):
            adjusted[train][metric] = result
    return adjusted


def score_lines(spec, results):
    """``NAME: STUDENT SPLIT METRIC SCORE (SIGNATURE)`` of every split a student was scored on
    (the main student is ``student``, the others go by their train stage's name)."""
    lines = []
    several = len(spec.train.seeds or []) > 1
    for train, evaluate in compared_students(spec):
        who = student_name(train)
        for seed, _, evaluate_stage in seed_stages(spec, train, evaluate):
            for split, scores in (results.get(evaluate_stage) or {}).items():
                if isinstance(scores, dict) and "score" in scores:
                    lines.append(
                        f"{spec.name}: {who}{f' seed {seed}' if several else ''} {split} "
                        f"{scores['metric']} {scores['score']:.2f}"
                        + (f" ({scores['signature']})" if scores.get("signature") else "")
                    )
    return lines


def comparison_rows(spec, results, run_dir=None, against=None):
    """``(header, rows)``, every row a list of cells (strings, one per header column): the
    method's teacher if it reports one, then each student this run evaluated; ``None`` with
    fewer than two students. Only the splits every student has a score on are columns (a split
    without labels is predicted but has no score). With ``run_dir`` (where the evaluate stages
    wrote their outputs) and a baseline, each student's difference to it on the test split is
    tested (sentence-cluster bootstrap and seed-level test, Holm-adjusted over the students).
    ``against`` (a student's train stage, :func:`student_stage`) adds a second such column:
    each other student against that one (LightPAFF against the pre-trained student without KD, say)."""
    from tfkd import registry
    from tfkd.context import RunContext
    from tfkd.plan import plan_run

    students = _evaluated(spec, results)
    if len(students) < 2:
        return None
    stage_results = results  # paired_differences joins a sweep's selection itself
    results, _ = _with_selection(spec, results, run_dir)
    splits = _scored_splits(spec, results, students)
    last = _finished(spec, results, *students[-1])[0][2]
    metric = next(iter(results[last].values()), {}).get("metric", "score")
    seeds = spec.train.seeds or [spec.train.seed]
    # {header: {train stage: its cell}}: the differences, then the gap closed
    columns = _difference_columns(spec, stage_results, run_dir, splits, against) if run_dir and splits else {}
    teacher = registry.lookup("method", spec.method).teacher_row(RunContext(spec), results)
    if teacher and not all("score" in (teacher["scores"].get(s) or {}) for s in splits):
        teacher = None
    if teacher and splits:
        split = tested_split(splits)
        closed = gap_closed(spec, results, students, teacher, split)
        if closed:
            columns[f"teacher-baseline gap closed, {split}"] = closed
    # the stages the method adds (a teacher's fine-tuning and cache, say) run once for all seeds
    method_stages = plan_run(spec).with_role("method")
    header = [
        "student",
        *([f"seeds ({len(seeds)}{'; one teacher' if method_stages else ''})"] if len(seeds) > 1 else []),
        *[f"{s} {metric}" + (" (mean ± std)" if len(seeds) > 1 else "") for s in splits],
        *columns,
        "decode",
        "trainable params",
        "steps",
        "train s",
        "method stages s",
    ]
    teacher_seconds = sum((results.get(s) or {}).get("seconds", 0) for s in method_stages)
    rows = []
    if teacher:
        rows.append(_teacher_row(teacher, splits, len(seeds), len(columns)))
    for train, evaluate in students:
        row = _student_row(spec, results, train, evaluate, splits, teacher_seconds if method_stages else None)
        at = 1 + len(splits) + (len(seeds) > 1)
        row[at:at] = [cells.get(train, "-") for cells in columns.values()]
        rows.append(row)
    return header, rows


def _teacher_row(teacher, splits, seeds, columns):
    """The teacher's row: its scores on ``splits``, its size, steps and time."""
    return [
        teacher["label"],
        *(["-"] if seeds > 1 else []),
        *[f"{teacher['scores'][s]['score']:.2f}" for s in splits],
        *["-"] * columns,
        "-",
        f"{teacher['parameters']:,}",
        str(teacher.get("steps", "?")),
        f"{teacher.get('seconds', 0):.0f}",
        "-",
    ]


def _difference_columns(spec, results, run_dir, splits, against):
    """``{column header: {train stage: difference cell}}`` against the baseline and ``against``."""
    columns = {}
    for reference in dict.fromkeys([BASELINE, *([against] if against else [])]):
        _, tests = paired_differences(spec, results, run_dir, reference=reference)
        if tests:
            tests = with_holm_columns(tests)
            header = difference_header(student_name(reference), tested_split(splits))
            columns[header] = {train: difference_cell(test) for train, test in tests.items()}
    return columns


def _mean_score(spec, results, train, evaluate, split):
    finished = _finished(spec, results, train, evaluate)
    scores = [results[e][split]["score"] for _, _, e in finished if "score" in (results[e].get(split) or {})]
    return statistics.mean(scores) if scores else None


def gap_closed(spec, results, students, teacher, split):
    """``{train stage: "62%"}``: how much of the gap between the baseline and the teacher (on
    ``split``, means over seeds) each other student closes, as distillation pipelines track it;
    ``{}`` without a baseline or when the teacher is level with it."""
    means = {train: _mean_score(spec, results, train, evaluate, split) for train, evaluate in students}
    baseline, gap = means.get(BASELINE), None
    if baseline is not None:
        gap = teacher["scores"][split]["score"] - baseline
    if not gap:
        return {}
    return {t: f"{100 * (m - baseline) / gap:.0f}%" for t, m in means.items() if t != BASELINE and m is not None}


def _with_selection(spec, results, run_dir):
    """``(results, folders)``: with a sweep's ``select`` stage, the chosen student's test
    scores joined to its evaluate stages' (the others have none: test is read once) and
    ``{evaluate stage: the folder of its outputs}`` (the chosen student's test outputs are in
    ``select/s<SEED>/``)."""
    folders = _Folders(run_dir) if run_dir is not None else {}
    selection = (results.get("select") or {}) if spec.sweep is not None else {}
    if not selection.get("chosen"):
        return results, folders
    from tfkd.selection import seed_folder

    results = dict(results)
    chosen = selection["chosen"]
    for seed, _, stage in seed_stages(spec, chosen):
        scores = selection["scores"].get(str(seed))
        if scores and stage in results:
            results[stage] = {**results[stage], **scores}
            if run_dir is not None:
                folders.chosen[stage] = os.path.join(run_dir, "select", seed_folder(seed))
    return results, folders


class _Folders(dict):
    """``{evaluate stage: its folder}``: ``run_dir/<stage>`` unless a selection says otherwise."""

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir, self.chosen = run_dir, {}

    def __missing__(self, stage):
        return self.chosen.get(stage, os.path.join(self.run_dir, stage))


def paired_differences(spec, results, run_dir, reference=BASELINE):
    """``(split, {train stage: {metric: paired test result}})``: every other student of the run
    in ``run_dir`` against the ``reference`` student (a train stage: the baseline unless told)
    on the tested split (test when scored), over every seed both finished, as the comparison
    table shows them; ``(None, {})`` when the reference is not evaluated or no split is scored.
    A result is :func:`tfkd.significance.paired_result`'s dict (difference, 95% interval,
    p-value); a difference is the student's score minus the reference's."""
    students = _evaluated(spec, results)
    if len(students) < 2 or reference not in [train for train, _ in students]:
        return None, {}
    results, folders = _with_selection(spec, results, run_dir)
    splits = _scored_splits(spec, results, students)
    if not splits:
        return None, {}
    split = tested_split(splits)
    # the reference first: the tests pair every other student with it
    students = sorted(students, key=lambda s: s[0] != reference)
    return split, _paired_tests(spec, results, folders, students, split, run_dir)


def _paired_tests(spec, results, folders, students, split, run_dir):
    """``{train stage: {metric: paired test result}}`` of every student after the first (the
    reference) against it on ``split`` (the seeds both finished, paired by seed)."""
    from tfkd.context import RunContext
    from tfkd.plan import plan_run
    from tfkd.runner import Runner

    # a runner of the run in run_dir: a task's paired test may read its stages (a classifier's
    # label names come from the vocab stage's tokenizer)
    where = spec.model_copy(
        update={
            "run_dir": os.path.dirname(os.path.abspath(run_dir)),
            "name": os.path.basename(os.path.abspath(run_dir)),
        }
    )
    context = RunContext(where, Runner(where, plan_run(where)))
    reference = {seed: e for seed, _, e in _finished(spec, results, *students[0]) if split in results[e]}
    tests = {}
    for train, evaluate in students[1:]:
        pairs = [
            (reference[seed], e)
            for seed, _, e in _finished(spec, results, train, evaluate)
            if seed in reference and split in results[e]
        ]
        if not pairs:
            continue
        test = context.task.paired_test(
            context.with_spec(_view(spec, train)),
            split,
            [folders[b] for b, _ in pairs],
            [folders[c] for _, c in pairs],
        )
        if test:
            tests[train] = test
    return tests


def _view(spec, train):
    return spec.variant(train) if train in (spec.variants or {}) else spec


def student_label(spec, results, train):
    """How tables and reports name the student of train stage ``train`` (the results of the
    first seed that trained it): ``baseline``, or its method and loss weights, a variant's name
    before them."""
    from tfkd.spec import TEACHER_TARGETS

    trained = _trained(spec, results, train) or {}
    method = trained.get("method", "?")
    weights = " ".join(f"{k}={v:g}" for k, v in (trained.get("loss_weights") or {}).items())
    label = "baseline" if train == BASELINE else f"{method} ({weights})" if weights else method
    if train not in (BASELINE, MAIN):
        label = f"{train}: {label}"
    if train != BASELINE and _view(spec, train).distill.targets == TEACHER_TARGETS:
        label += " on teacher translations"  # sequence-level KD
    if trained.get("initialised_from"):
        label += f", from {trained['initialised_from']}"
    return label


def _student_row(spec, results, train, evaluate, splits, teacher_seconds):
    label = student_label(spec, results, train)
    trained = _trained(spec, results, train)
    # its method planned stages
    own_stages = teacher_seconds is not None and trained.get("method", "?") == spec.method
    own_spec = _view(spec, train)
    selection = results.get("select") if spec.sweep is not None else None
    if selection and selection.get("chosen") == train:
        on = selection["selected_on"]
        label += f" [chosen on {on['split']} {on['metric']}]"
    trainable = trained.get("trainable_parameters")
    finished = _finished(spec, results, train, evaluate)
    seeds = spec.train.seeds or [spec.train.seed]
    return [
        label,
        *([", ".join(str(seed) for seed, _, _ in finished)] if len(seeds) > 1 else []),
        *[
            score_cell([results[e][s]["score"] for _, _, e in finished if "score" in (results[e].get(s) or {})])
            for s in splits
        ],
        own_spec.decode.algorithm if hasattr(own_spec.decode, "algorithm") else "-",
        f"{trainable:,}" if trainable else "?",
        str(trained.get("steps", "?")),
        f"{trained.get('seconds', 0):.0f}",
        f"{teacher_seconds:.0f}" if own_stages else "-",
    ]


def render_table(header, rows):
    """A Markdown table of ``header`` and ``rows`` (lists of strings), columns padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


FEW_SEEDS = (
    "Fewer than 3 seeds: the seed-level test cannot judge, so no difference above is established. "
    "tfkd run SPEC --seeds 1,2,3 trains each student three times (the teacher's stages once)."
)


def comparison_table(spec, results, run_dir=None):
    """:func:`comparison_rows` rendered by :func:`render_table`; ``None`` with fewer than two
    students."""
    table = comparison_rows(spec, results, run_dir)
    from tfkd.significance import MIN_SEEDS

    if not table:
        return None
    return render_table(*table) + (f"\n{FEW_SEEDS}" if len(spec.train.seeds or [spec.train.seed]) < MIN_SEEDS else "")


__all__ = [
    "compared_students",
    "comparison_rows",
    "comparison_table",
    "difference_cell",
    "difference_header",
    "with_holm_columns",
    "paired_differences",
    "render_table",
    "score_cell",
    "score_lines",
    "seed_stages",
    "student_name",
    "student_stage",
    "tested_split",
]
