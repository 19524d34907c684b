"""The students one run trained (a baseline, the spec's variants, the main one), side by side:
their scores, then a table of metric per split, decoder, trainable parameters, steps and wall
time. ``tfkd run`` prints both after a run.

Compute, then render::

    table = comparison_rows(spec, results)       # None with fewer than two students
    if table:
        print(render_table(*table))

``results`` is ``{stage: its results}`` as :meth:`tfkd.runner.Runner.run` returns them. Importing
this module imports neither TensorFlow nor a method or a task.
"""


def compared_students(spec):
    """``(train stage, evaluate stage)`` of every student a run trains: the baseline, the
    variants, the main one."""
    return [
        ("baseline", "baseline_evaluate"),
        *[(name, f"{name}_evaluate") for name in spec.variants or {}],
        ("train", "evaluate"),
    ]


def score_lines(spec, results):
    """``NAME: STUDENT SPLIT METRIC SCORE (SIGNATURE)`` of every split a student was scored on
    (the main student is ``student``, the others go by their train stage's name)."""
    lines = []
    for train_stage, evaluate_stage in compared_students(spec):
        who = "student" if train_stage == "train" else train_stage
        for split, scores in (results.get(evaluate_stage) or {}).items():
            if isinstance(scores, dict) and "score" in scores:
                lines.append(
                    f"{spec.name}: {who} {split} {scores['metric']} {scores['score']:.2f}"
                    + (f" ({scores['signature']})" if scores.get("signature") else "")
                )
    return lines


def comparison_rows(spec, results):
    """``(header, rows)``, every row a list of cells (strings, one per header column): the
    method's teacher if it reports one, then each student this run evaluated; ``None`` with
    fewer than two students. Only the splits every student has a score on are columns (a split
    without labels is predicted but has no score)."""
    from tfkd import registry
    from tfkd.context import RunContext
    from tfkd.plan import plan_run

    students = [(t, e) for t, e in compared_students(spec) if t in results and e in results]
    if len(students) < 2:
        return None
    splits = [s for s in spec.evaluate.splits if all("score" in (results[e].get(s) or {}) for _, e in students)]
    metric = next(iter(results[students[-1][1]].values()), {}).get("metric", "score")
    header = [
        "student",
        *[f"{s} {metric}" for s in splits],
        "decode",
        "trainable params",
        "steps",
        "train s",
        "method stages s",
    ]
    # the stages the method adds (a teacher's fine-tuning and cache, say)
    method_stages = plan_run(spec).with_role("method")
    teacher_seconds = sum((results.get(s) or {}).get("seconds", 0) for s in method_stages)
    rows = []
    teacher = registry.lookup("method", spec.method).teacher_row(RunContext(spec), results)
    if teacher and all("score" in (teacher["scores"].get(s) or {}) for s in splits):
        rows.append(
            [
                teacher["label"],
                *[f"{teacher['scores'][s]['score']:.2f}" for s in splits],
                "-",
                f"{teacher['parameters']:,}",
                str(teacher.get("steps", "?")),
                f"{teacher.get('seconds', 0):.0f}",
                "-",
            ]
        )
    rows.extend(
        _student_row(spec, results, train, evaluate, splits, teacher_seconds if method_stages else None)
        for train, evaluate in students
    )
    return header, rows


def _student_row(spec, results, train, evaluate, splits, teacher_seconds):
    from tfkd.spec import TEACHER_TARGETS

    method = results[train].get("method", "?")
    weights = " ".join(f"{k}={v:g}" for k, v in (results[train].get("loss_weights") or {}).items())
    label = "baseline" if train == "baseline" else f"{method} ({weights})" if weights else method
    if train not in ("baseline", "train"):
        label = f"{train}: {label}"
    own_stages = teacher_seconds is not None and method == spec.method  # its method planned stages
    own_spec = spec.variant(train) if train in (spec.variants or {}) else spec
    if train != "baseline" and own_spec.distill.targets == TEACHER_TARGETS:
        label += " on teacher translations"  # sequence-level KD
    if results[train].get("initialised_from"):
        label += f", from {results[train]['initialised_from']}"
    trainable = results[train].get("trainable_parameters")
    return [
        label,
        *[f"{results[evaluate][s]['score']:.2f}" for s in splits],
        own_spec.decode.algorithm if hasattr(own_spec.decode, "algorithm") else "-",
        f"{trainable:,}" if trainable else "?",
        str(results[train].get("steps", "?")),
        f"{results[train].get('seconds', 0):.0f}",
        f"{teacher_seconds:.0f}" if own_stages else "-",
    ]


def render_table(header, rows):
    """A Markdown table of ``header`` and ``rows`` (lists of strings), columns padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def comparison_table(spec, results):
    """:func:`comparison_rows` rendered by :func:`render_table`; ``None`` with fewer than two
    students."""
    table = comparison_rows(spec, results)
    return render_table(*table) if table else None


__all__ = ["compared_students", "comparison_rows", "comparison_table", "render_table", "score_lines"]
