"""The Python way to use a trained model: :func:`load` an export or a run directory and call the
:class:`Predictor` on text, whatever the task.

    >>> import tfkd
    >>> model = tfkd.load("runs/quickstart/export/quickstart")   # or "runs/quickstart"
    >>> model(["Ein Mann fährt Fahrrad."])
    ['a man is riding a bike.']

A translation model gives translations, a classifier labels, a language model continuations:
what ``tfkd translate`` / ``tfkd predict`` / ``tfkd generate`` print, through the same code.
"""

import os

from tfkd.errors import SpecError, StageError


class Predictor:
    """A model that takes a list of strings and gives one string per input.

    Args:
        predict: ``lines -> outputs``.
        task: the task's registered name (``translation``, ``classification``, ...).
        path: what was loaded (a SavedModel folder or a run directory).
    """

    def __init__(self, predict, task, path):
        self._predict = predict
        self.task = task
        self.path = path

    def __call__(self, lines):
        if isinstance(lines, str):
            raise TypeError("a Predictor takes a list of strings; wrap one string in a list")
        lines = list(lines)
        return self._predict(lines) if lines else []

    def __repr__(self):
        return f"Predictor(task={self.task!r}, path={self.path!r})"


def load(path, student=None, batch_size=None):
    """A :class:`Predictor` of ``path``: a SavedModel tfkd exported (a version folder, or a TF
    Serving base path: its newest version), a CTranslate2 export folder, or a run directory
    (its ``train`` stage's student, or ``student``: ``baseline``, a variant's name, with that
    student's decoding settings).

    ``batch_size`` (an export) is the lines per call (default: the spec's
    ``decode.batch_size``, recorded in the export). Raises :class:`~tfkd.errors.StageError`
    for a path that is neither, or a run whose student did not finish."""
    from tfkd.serving import find_export

    if not os.path.exists(path):
        raise StageError(
            f"{path}: no such file or directory (give a SavedModel, a TF Serving base path or a run directory)"
        )
    export = find_export(path)
    if export:
        if student is not None:
            raise SpecError(f"{path}: an export holds one student; student= applies to a run directory")
        exporter, folder = export
        predict, info = exporter.predictor(folder, batch_size)
        return Predictor(predict, info.get("task"), folder)
    from tfkd.pipeline import open_finished_run
    from tfkd.stages import load_student

    stage = student or "train"
    spec, _, context = open_finished_run(path, stage)
    if stage in (spec.variants or {}):
        context = context.with_spec(spec.variant(stage))
    model = load_student(context, stage)
    return Predictor(context.task.predictor(context, model), spec.task, path)


__all__ = ["Predictor", "load"]
