"""The classification task's part of a run's report (:meth:`tfkd.tasks.Task.report`): a
confusion matrix per evaluated student, from the predicted labels its evaluate stage wrote
(``<split>.pred``, one label name a line) against the split's labels, on the first split that
was scored (GLUE's test split has no labels)."""

import os

from tfkd.report import figures
from tfkd.report.html import note, paragraph, table
from tfkd.tasks.base import ReportSection, TaskReport

SAMPLE_INPUTS = 8
PER_ROW = 3  # confusion matrices side by side


def scored_split(students, spec):
    """The first of ``evaluate.splits`` any student was scored on (it had labels), else the first."""
    for split in spec.evaluate.splits:
        if any(s.score(split) for s in students):
            return split
    return spec.evaluate.splits[0]


def read_predictions(student, split):
    """The label names the student predicted on ``split`` (``None``: not written)."""
    if student.evaluate_dir is None:
        return None
    path = os.path.join(student.evaluate_dir, f"{split}.pred")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t")[0] for line in f]


def confusion(gold, predicted, classes):
    """``[true][predicted]`` counts over the examples with a label (``gold >= 0``)."""
    matrix = [[0] * classes for _ in range(classes)]
    for g, p in zip(gold, predicted):
        if g >= 0 and 0 <= p < classes:
            matrix[g][p] += 1
    return matrix


def classification_report(task, context, students, out_dir):
    spec = context.spec
    title = "Confusion matrices"
    split = scored_split(students, spec)
    try:
        names = task.label_names(context)
        corpus = task.corpus(context, split)
    except Exception as e:  # a missing corpus or vocabulary: say so
        message = f"the {split} split or the labels could not be read ({type(e).__name__}: {e})"
        return TaskReport([ReportSection(title, note(f"No confusion matrices: {message}."))], inputs_note=message)
    inputs = list(corpus.texts[:SAMPLE_INPUTS])
    if not corpus.labeled:
        return TaskReport(
            [ReportSection(title, note(f"The {split} split has no labels: nothing to compare predictions with."))],
            sample_inputs=inputs,
        )
    gold = [int(g) for g in corpus.labels]
    index = {name: i for i, name in enumerate(names)}
    parts, matrices = [], []
    for student in students:
        predicted = read_predictions(student, split)
        if predicted is None:
            why = (
                f"stage {student.evaluate_stage} has not finished"
                if student.evaluate_dir is None
                else f"its evaluate stage wrote no per-example predictions ({split}.pred) in {student.evaluate_dir}"
            )
            parts.append(note(f"{student.label}: no confusion matrix: {why}."))
            continue
        if len(predicted) != len(gold):
            parts.append(
                note(
                    f"{student.label}: {split}.pred has {len(predicted)} lines, the {split} split "
                    f"{len(gold)} (the data changed since it was evaluated)."
                )
            )
            continue
        matrices.append((student.label, confusion(gold, [index.get(p, -1) for p in predicted], len(names))))
    if not matrices:
        return TaskReport([ReportSection(title, "".join(parts))], sample_inputs=inputs)
    columns = min(PER_ROW, len(matrices))
    rows = -(-len(matrices) // columns)
    size = 1.2 + 0.45 * len(names)
    figure, axes = figures.new_figure(max(3.2, size) * columns, max(3.0, size) * rows, rows, columns, grid=True)
    cells = [a for row in axes for a in row]
    for panel, (label, matrix) in zip(cells, matrices):
        figures.matrix_panel(panel, matrix, names, label)
    for panel in cells[len(matrices) :]:
        panel.set_axis_off()
    file_name = figures.save(figure, out_dir, f"confusion-{split}")
    summary = [[label, *_per_class_recall(matrix)] for label, matrix in matrices]
    intro = paragraph(
        f"Rows: the true label; columns: the predicted one; {sum(1 for g in gold if g >= 0)} labelled {split} "
        "examples. The table gives each class's recall (the diagonal over the row), in percent."
    )
    html = intro + "".join(parts) + table(["student", *[f"recall {n}" for n in names]], summary)
    return TaskReport(
        [ReportSection(title, html, [(file_name, f"{split} confusion matrix of each student")])], sample_inputs=inputs
    )


def _per_class_recall(matrix):
    return [f"{100 * row[i] / sum(row):.1f}" if sum(row) else "-" for i, row in enumerate(matrix)]


__all__ = ["classification_report", "confusion", "read_predictions", "scored_split"]
