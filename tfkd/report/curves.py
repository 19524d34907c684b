"""Training curves: the scalars a training stage logged (:class:`tfkd.training.callbacks.TrainingMonitor`
writes ``train/<term>``, ``train/learning_rate``, ``train/tokens_per_second``, ``valid/<name>``
into ``<stage>/tensorboard/``), read with TensorBoard's ``EventAccumulator``; where a stage has
no event files, from the run's ``log.txt`` (its ``step N/TOTAL | name value | ... | lr X |
S steps/s | T tokens/s`` and ``step N | val_name value`` lines). Then one figure per stage and
one comparing the students."""

import logging
import os
import re

from tfkd.report import figures

EVENTS_DIR = "tensorboard"
SPEED = ("steps_per_second", "tokens_per_second")
NOT_A_LOSS = ("learning_rate", "grad_norm", *SPEED)


def _quiet_tensorboard():
    """TensorBoard's loader logs each file it finishes at INFO; keep that off a run's log."""
    logger = logging.getLogger("tensorboard")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def read_events(directory):
    """``{tag: [(step, value)]}`` of the scalar summaries under ``directory`` (``{}`` when it
    holds no event files)."""
    if not os.path.isdir(directory) or not any("tfevents" in f for _, _, files in os.walk(directory) for f in files):
        return {}
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    _quiet_tensorboard()
    accumulator = event_accumulator.EventAccumulator(directory, size_guidance={"tensors": 0, "scalars": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    curves = {}
    for tag in tags.get("tensors", []):  # tf.summary.scalar in TF 2 writes tensors
        points = []
        for event in accumulator.Tensors(tag):
            value = tensor_util.make_ndarray(event.tensor_proto)
            if value.size == 1:
                points.append((int(event.step), float(value.reshape(()))))
        if points:
            curves[tag] = points
    for tag in tags.get("scalars", []):
        curves.setdefault(tag, [(int(e.step), float(e.value)) for e in accumulator.Scalars(tag)])
    return {tag: sorted(dict(points).items()) for tag, points in curves.items()}


_STAGE_START = re.compile(r"\bstage (?P<stage>\S+): running into ")
_STAGE_LINE = re.compile(r"\bstage \S+: ")
_STEP = re.compile(r"\bstep (?P<step>\d+)(?:/\d+)? \| (?P<rest>.*)$")
_PAIR = re.compile(r"^(?P<name>[A-Za-z_][\w.]*) (?P<value>[-+0-9.eE]+|nan|inf)$")
_SPEED = re.compile(r"^(?P<value>[0-9.]+) (?P<unit>steps|tokens)/s$")


def read_log(log_path, stage):
    """``{tag: [(step, value)]}`` of ``stage``'s step lines in a run's ``log.txt`` (the lines
    after each ``stage STAGE: running into`` until the next stage line); later lines of a
    step (a resumed stage) replace earlier ones."""
    if not os.path.isfile(log_path):
        return {}
    curves, inside = {}, False
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            start = _STAGE_START.search(line)
            if start:
                inside = start["stage"] == stage
                continue
            if _STAGE_LINE.search(line) or line.startswith("--- "):
                inside = False
                continue
            step = _STEP.search(line) if inside else None
            if step:
                for name, value in _step_values(step["rest"]):
                    curves.setdefault(name, {})[int(step["step"])] = value
    return {tag: sorted(points.items()) for tag, points in curves.items()}


def _step_values(rest):
    for part in (p.strip() for p in rest.split("|")):
        speed = _SPEED.match(part)
        if speed:
            yield f"train/{speed['unit']}_per_second", float(speed["value"])
            continue
        pair = _PAIR.match(part)
        if not pair:
            continue
        name, value = pair["name"], float(pair["value"])
        if name == "lr":
            yield "train/learning_rate", value
        elif name.startswith("val_"):
            yield f"valid/{name[4:]}", value
        else:
            yield f"train/{name}", value


def stage_curves(stage_dir, partial_dir, log_path, stage):
    """``(curves, where)`` of a training stage: from its event files (finished folder first,
    else the partial one), else from the log; ``where`` says which (``None``: nothing)."""
    for directory in (stage_dir, partial_dir):
        if directory:
            curves = read_events(os.path.join(directory, EVENTS_DIR))
            if curves:
                return curves, os.path.join(directory, EVENTS_DIR)
    curves = read_log(log_path, stage)
    return (curves, log_path) if curves else ({}, None)


def _series(curves, tags, style=None):
    return [(tag.split("/", 1)[1], *zip(*curves[tag]), style) for tag in tags if curves.get(tag)]


# names of quality measures (not losses) a stage may log: shown with the validation metric
METRIC_WORDS = ("accuracy", "bleu", "chrf", "perplexity", "f1")


def _is_metric(name):
    return any(word in name for word in METRIC_WORDS)


def validation_metrics(curves):
    """The ``valid/`` tags of quality measures (the task's metric: ``valid/bleu``, an MLM's
    ``valid/accuracy``, ...): those named like one, and those that are not a training term's
    validation value, the loss or the token count."""
    terms = {t.split("/", 1)[1] for t in curves if t.startswith("train/")} | {"loss", "nll", "xe"}
    names = [(t, t.split("/", 1)[1]) for t in curves if t.startswith("valid/")]
    return sorted(t for t, name in names if name != "tokens" and (_is_metric(name) or name not in terms))


def stage_figure(curves, title, out_dir, name):
    """A 2 x 2 figure of one stage: the loss terms (validation losses dashed), the validation
    metric, the learning rate and the throughput; returns the file name."""
    figure, axes = figures.new_figure(9.0, 6.0, 2, 2)
    (terms_axes, valid_axes), (rate_axes, speed_axes) = axes
    train = [(t, t.split("/", 1)[1]) for t in curves if t.startswith("train/")]
    terms = sorted(t for t, name in train if name not in NOT_A_LOSS and not _is_metric(name))
    valid_losses = sorted(
        t for t in curves if t.startswith("valid/") and t not in validation_metrics(curves) and t != "valid/tokens"
    )
    series = _series(curves, terms) + [
        (f"valid {label}", steps, values, {"linestyle": "--"})
        for label, steps, values, _ in _series(curves, valid_losses)
    ]
    if series:
        figures.line_panel(terms_axes, "loss terms", series)
    else:
        figures.empty_panel(terms_axes, "loss terms", "not logged")
    metrics = [(f"valid {label}", *rest) for label, *rest in _series(curves, validation_metrics(curves))]
    metrics += [
        (f"train {label}", steps, values, {"linestyle": ":"})
        for label, steps, values, _ in _series(curves, sorted(t for t, name in train if _is_metric(name)))
    ]
    if metrics:
        figures.line_panel(valid_axes, "validation metric", metrics)
    else:
        figures.empty_panel(valid_axes, "validation metric", "not logged (no validation split or metric)")
    if curves.get("train/learning_rate"):
        figures.line_panel(rate_axes, "learning rate", _series(curves, ["train/learning_rate"]))
    else:
        figures.empty_panel(rate_axes, "learning rate", "not logged")
    speed = "train/tokens_per_second" if any(v for _, v in curves.get("train/tokens_per_second", [])) else None
    speed = speed or ("train/steps_per_second" if curves.get("train/steps_per_second") else None)
    if speed:
        figures.line_panel(speed_axes, speed.split("/", 1)[1].replace("_per_second", "/s"), _series(curves, [speed]))
    else:
        figures.empty_panel(speed_axes, "throughput", "not logged")
    figure.suptitle(title, fontsize=10)
    return figures.save(figure, out_dir, name)


def comparison_figure(student_curves, out_dir, name="curves-students"):
    """The students side by side: training loss and the validation metric against steps
    (``student_curves``: ``[(label, curves, style)]``, ``style`` the lines' plot arguments:
    a colour per student, another line style for its other seeds); ``None`` with fewer than
    two curves."""
    shown = [(label, curves, style) for label, curves, style in student_curves if curves.get("train/loss")]
    if len(shown) < 2:
        return None
    figure, axes = figures.new_figure(9.0, 3.6, 1, 2)
    loss_axes, metric_axes = axes[0]
    figures.line_panel(loss_axes, "training loss", [(label, *zip(*c["train/loss"]), st) for label, c, st in shown])
    metric = next((validation_metrics(c)[0] for _, c, _ in shown if validation_metrics(c)), None)
    with_metric = [(label, c, st) for label, c, st in shown if metric and c.get(metric)]
    if with_metric:
        figures.line_panel(
            metric_axes,
            f"validation {metric.split('/', 1)[1]}",
            [(label, *zip(*c[metric]), st) for label, c, st in with_metric],
        )
    else:
        figures.empty_panel(metric_axes, "validation metric", "not logged")
    return figures.save(figure, out_dir, name)


__all__ = ["comparison_figure", "read_events", "read_log", "stage_curves", "stage_figure", "validation_metrics"]
