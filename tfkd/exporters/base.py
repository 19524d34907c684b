"""What an exporter is, and the layout every exporter writes into: TF Serving's.

A model's exports live in one folder, ``<out>/<model_name>/``, one entry per version: a
numbered folder (a SavedModel, which TF Serving loads) or a numbered file beside them (TF
Serving ignores files). An entry is written under a hidden temporary name and renamed into
place, so it is at every moment absent, complete, or (exported again) the complete old one.

Importing this module does not import TensorFlow.
"""

import os
import shutil
import time

from tfkd.errors import StageError
from tfkd.runner import move_into_place


class Exporter:
    """Writes a trained student in one format; registered by name (the spec's
    ``export.format``, ``tfkd export --format NAME``) with ``@tfkd.register("exporter", NAME)``
    on the class. A user's exporter registers the same way from a module under ``imports:``.

    Subclasses set :attr:`name`, :attr:`writes` and, for a file rather than a folder,
    :attr:`suffix`, and implement :meth:`write`. Keep TensorFlow imports inside the methods:
    the built-in exporters are imported to validate specs.
    """

    name = None
    # one line: what an export holds
    writes = ""
    # a version's entry is "<version><suffix>": "" a folder; ".x.y" a file
    suffix = ""

    def write(self, context, student, path):
        """Write ``student`` (trained in the run of ``context``) to ``path``: a folder to create,
        or a file when :attr:`suffix` is set. Raise :class:`tfkd.runner.StageError` for a
        student this format cannot hold."""
        raise NotImplementedError

    @classmethod
    def find(cls, path):
        """The export of this format at ``path`` that ``tfkd translate`` / :func:`tfkd.load` can
        serve (``path`` itself, or for a TF Serving base path its newest version), else None."""
        return None

    @classmethod
    def predictor(cls, path, batch_size=None):
        """``(predict, info)`` of the export :meth:`find` gave: ``predict(lines) -> outputs``
        (one string per line, in input order, ``batch_size`` lines a call; default the
        export's) and what the export records (``task``, ``evaluate``, ``output``, ...)."""
        raise NotImplementedError(f"{cls.name} exports are not served by tfkd")

    def export(self, context, student, directory, version):
        """Write version ``version`` into the model folder ``directory`` atomically; its path."""
        path = os.path.join(directory, f"{version}{self.suffix}")
        write_atomically(lambda target: self.write(context, student, target), path)
        return path


def write_atomically(write, path):
    """Call ``write(target)`` for a hidden temporary ``target`` beside ``path`` (TF Serving
    ignores names that are not numbers; the name keeps ``path``'s suffix) and rename what it
    wrote, a folder or a file, to ``path``, replacing an old one whole."""
    directory, name = os.path.split(path)
    made = _folders_to_make(directory)
    os.makedirs(directory, exist_ok=True)
    version, dot, suffix = name.partition(".")
    tmp = os.path.join(directory, f".tmp-{version}-{os.getpid()}-{int(time.time() * 1000)}{dot}{suffix}")
    written = False
    try:
        write(tmp)
        if os.path.isdir(tmp):
            move_into_place(tmp, path)
        else:
            os.replace(tmp, path)
        written = True
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        if not written:  # an error or Ctrl-C leaves no empty model folder behind
            for folder in made:
                try:
                    os.rmdir(folder)
                except OSError:  # another export wrote into it meanwhile
                    break


def _folders_to_make(directory):
    """The folders ``os.makedirs(directory)`` makes, the deepest first."""
    made, folder = [], os.path.abspath(directory)
    while not os.path.exists(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    return made


def existing_versions(out_dir, model_name):
    """The version numbers already under ``<out_dir>/<model_name>/``, in any format."""
    base = os.path.join(out_dir, model_name)
    names = os.listdir(base) if os.path.isdir(base) else []
    return sorted({int(n.split(".")[0]) for n in names if n.split(".")[0].isdigit()})


def choose_version(out_dir, model_name, requested, default):
    """The version ``tfkd export`` writes: ``requested`` (a number, or ``"auto"``: one more than
    the newest there, else ``default``), never one that exists (TF Serving reads a new number
    as a new model; rewriting one in place would change what a loaded version serves)."""
    versions = existing_versions(out_dir, model_name)
    if requested == "auto":
        return versions[-1] + 1 if versions else default
    version = default if requested is None else int(requested)
    if version in versions:
        raise StageError(
            f"{os.path.join(out_dir, model_name, str(version))}: version {version} exists; "
            f"export a new one with --version auto (next: {versions[-1] + 1}) or --version N"
        )
    return version


def directory_size(path):
    """Bytes of a file, or of every file below a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
