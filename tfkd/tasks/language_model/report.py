"""The language-model task's part of a run's report (:meth:`tfkd.tasks.Task.report`): token
perplexity by position in a block, per student, from the sums its evaluate stage wrote
(``<split>.positions.json``: the NLL and token count at each position; position ``k`` is
predicted from ``k + 1`` tokens of context), so a reader sees how much a longer context helps.
Students evaluated before that file was written are named, with what to do."""

import json
import math
import os

from tfkd.report import figures
from tfkd.report.html import note, paragraph, table
from tfkd.tasks.base import ReportSection, TaskReport

POSITIONS = "positions.json"  # <split>.positions.json in an evaluate stage's folder
SAMPLE_INPUTS = 8
PROMPT_WORDS = 12  # the prompts timed: the first words of the first non-empty test lines


def read_positions(student, split):
    """``{"block_size", "nll", "tokens"}`` of the student's ``split`` (``None``: not written)."""
    if student.evaluate_dir is None:
        return None
    path = os.path.join(student.evaluate_dir, f"{split}.{POSITIONS}")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def perplexity_by_position(positions, groups=None):
    """``[(first position, last position, perplexity)]``: token perplexity over positions,
    in ``groups`` equal spans of the block (default: one per position up to 32 positions)."""
    nll, tokens = positions["nll"], positions["tokens"]
    size = len(nll)
    groups = min(groups or 32, size)
    spans = []
    for g in range(groups):
        first, last = g * size // groups, (g + 1) * size // groups - 1
        total, count = sum(nll[first : last + 1]), sum(tokens[first : last + 1])
        if count:
            spans.append((first, last, math.exp(total / count)))
    return spans


def language_model_report(task, context, students, out_dir):
    spec = context.spec
    split = "test" if "test" in spec.evaluate.splits else spec.evaluate.splits[0]
    title = "Perplexity by position"
    inputs, inputs_note = None, None
    try:
        lines = [line for line in task.text(context, split).lines if line.strip()]
        inputs = [" ".join(line.split()[:PROMPT_WORDS]) for line in lines[:SAMPLE_INPUTS]]
    except Exception as e:  # a missing corpus: no prompts to time
        inputs_note = f"the {split} split could not be read ({type(e).__name__}: {e})"
    parts, curves = [], []
    for student in students:
        positions = read_positions(student, split)
        if positions is None:
            why = (
                f"stage {student.evaluate_stage} has not finished"
                if student.evaluate_dir is None
                else f"{student.evaluate_dir} has no {split}.{POSITIONS} (evaluated before tfkd wrote per-position "
                f"sums; delete that folder and run the stage again to get them)"
            )
            parts.append(note(f"{student.label}: no perplexity by position: {why}."))
            continue
        curves.append((student.label, perplexity_by_position(positions)))
    if not curves:
        return TaskReport([ReportSection(title, "".join(parts))], sample_inputs=inputs, inputs_note=inputs_note)
    figure, axes = figures.new_figure(7.0, 3.8)
    figures.line_panel(
        axes,
        f"{split} token perplexity by position in a block",
        [
            (label, [(a + b) / 2 + 1 for a, b, _ in spans], [p for _, _, p in spans], {"color": figures.colour(i)})
            for i, (label, spans) in enumerate(curves)
        ],
        xlabel="tokens of context",
        ylabel="perplexity",
        log_y=True,
    )
    file_name = figures.save(figure, out_dir, f"perplexity-by-position-{split}")
    spans = curves[0][1]
    picked = sorted({0, len(spans) // 4, len(spans) // 2, len(spans) - 1})
    header = ["student", *[_positions(spans[i][0] + 1, spans[i][1] + 1) for i in picked]]
    rows = [[label, *[f"{s[i][2]:.2f}" if i < len(s) else "-" for i in picked]] for label, s in curves]
    html = paragraph(
        f"Token perplexity of the {split} blocks by position: a token at position k is predicted from k tokens "
        "of its block (the first from the end-of-text mark before it alone)."
    )
    html += "".join(parts) + table(header, rows)
    return TaskReport(
        [ReportSection(title, html, [(file_name, f"{split} perplexity by position")])],
        sample_inputs=inputs,
        inputs_note=inputs_note,
    )


def _positions(first, last):
    return f"position {first}" if first == last else f"positions {first}-{last}"


__all__ = ["POSITIONS", "language_model_report", "perplexity_by_position", "read_positions"]
