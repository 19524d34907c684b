"""The report's figures, drawn with matplotlib's Agg canvas on a :class:`matplotlib.figure.Figure`
(no pyplot: nothing global changes, whatever backend a notebook has chosen) and saved as PNG
files beside the page. Tasks draw their own sections' figures with these helpers too."""

import os

from tfkd.report.html import slug

DPI = 130
# one colour per student, stable in the order the report lists students
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


def new_figure(width=6.4, height=4.0, rows=1, columns=1, grid=False):
    """``(figure, axes)``: a figure on an Agg canvas and its ``rows`` x ``columns`` axes (one
    axes object for 1 x 1, else an array of rows; with ``grid``, an array of rows always)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, squeeze=rows * columns == 1 and not grid)


def save(figure, out_dir, name):
    """Write ``figure`` as ``out_dir/<name>.png`` (``name`` made file-safe); returns the file's
    name relative to ``out_dir``."""
    file_name = slug(name) + ".png"
    figure.savefig(os.path.join(out_dir, file_name), format="png")
    return file_name


def colour(index):
    return COLOURS[index % len(COLOURS)]


def empty_panel(axes, title, message):
    """A panel that says what it would show and why it cannot."""
    axes.set_title(title, fontsize=9)
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=8, color="#777", wrap=True)
    axes.set_xticks([])
    axes.set_yticks([])


def line_panel(axes, title, series, xlabel="step", ylabel=None, log_y=False):
    """``series``: ``[(label, steps, values, style)]``, ``style`` a dict of plot arguments."""
    for label, steps, values, style in series:
        axes.plot(steps, values, label=label, **({"marker": "." if len(steps) < 30 else None} | (style or {})))
    axes.set_title(title, fontsize=9)
    axes.set_xlabel(xlabel, fontsize=8)
    if ylabel or (len(series) == 1 and series[0][0]):  # one line: its name on the axis
        axes.set_ylabel(ylabel or series[0][0], fontsize=8)
    values = [v for _, _, vs, _ in series for v in vs]
    if log_y and values and min(values) > 0 and max(values) > 10 * min(values):  # log only over a wide range
        axes.set_yscale("log")
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize=7)


def grouped_bars(axes, groups, series, ylabel, title=None):
    """Bars of ``series`` (``[(label, [value per group])]``, ``None`` for no bar) side by side
    in each of ``groups`` (their labels)."""
    count = max(len(series), 1)
    width = 0.8 / count
    for i, (label, values) in enumerate(series):
        positions = [g + (i - (count - 1) / 2) * width for g in range(len(groups))]
        shown = [(p, v) for p, v in zip(positions, values) if v is not None]
        axes.bar([p for p, _ in shown], [v for _, v in shown], width, label=label, color=colour(i))
    axes.set_xticks(range(len(groups)))
    axes.set_xticklabels(groups, fontsize=7)
    axes.set_ylabel(ylabel, fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(axis="y", alpha=0.3)
    if title:
        axes.set_title(title, fontsize=9)
    if series:
        axes.legend(fontsize=7)


def labelled_scatter(axes, points, xlabel, ylabel, title=None, log_x=False):
    """``points``: ``[(label, x, y, colour index)]``; each point labelled beside it."""
    placed = []
    for label, x, y, index in points:
        axes.scatter([x], [y], color=colour(index), s=36, zorder=3)
        # points at the same place (same size, same score): their labels stacked, not overprinted
        above = sum(1 for p in placed if p == (x, y))
        placed.append((x, y))
        axes.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4 + 9 * above), fontsize=7)
    axes.set_xlabel(xlabel, fontsize=8)
    axes.set_ylabel(ylabel, fontsize=8)
    if log_x and points and all(x > 0 for _, x, _, _ in points):
        axes.set_xscale("log")
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)
    if title:
        axes.set_title(title, fontsize=9)
    axes.margins(0.2)


def matrix_panel(axes, matrix, labels, title, xlabel="predicted", ylabel="true"):
    """A heat map of ``matrix`` (rows: true, columns: predicted) with each cell's count."""
    peak = max((max(row) for row in matrix), default=0) or 1
    axes.imshow(matrix, cmap="Blues", vmin=0, vmax=peak)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            axes.text(
                j, i, str(value), ha="center", va="center", fontsize=7, color="white" if value > peak / 2 else "black"
            )
    axes.set_xticks(range(len(labels)))
    axes.set_yticks(range(len(labels)))
    axes.set_xticklabels(labels, fontsize=7, rotation=45 if max(map(len, labels), default=0) > 3 else 0)
    axes.set_yticklabels(labels, fontsize=7)
    axes.set_xlabel(xlabel, fontsize=8)
    axes.set_ylabel(ylabel, fontsize=8)
    axes.set_title(title, fontsize=9)


__all__ = [
    "colour",
    "empty_panel",
    "grouped_bars",
    "labelled_scatter",
    "line_panel",
    "matrix_panel",
    "new_figure",
    "save",
]
