"""The errors tfkd raises, each reported as one line (``tfkd: error: ...`` or ``file:line: ...``).

Every module imports them from here; the modules that first defined them
(:mod:`tfkd.spec`, :mod:`tfkd.runner`, :mod:`tfkd.data`, :mod:`tfkd.distribute`,
:mod:`tfkd.methods.base`, :mod:`tfkd.methods.soft_target.cache`) re-export them.

This module imports no other tfkd module and no TensorFlow (io_problem reads TensorFlow's error
classes only when TensorFlow is already imported).
"""

import sys


class SpecError(ValueError):
    """A spec problem; ``str()`` is the one-line message the CLI prints."""


class StageError(RuntimeError):
    """A stage could not run; the message says why and what to do."""


class DataError(ValueError):
    """Bad input data; the message names the file (and line) at fault."""


class CacheMismatch(DataError):
    """The cache does not hold exactly the examples the student trains on, or its shards are
    not the ones its manifest lists (truncated, replaced, missing)."""


class MethodError(RuntimeError):
    """A method cannot run with this spec; the message says what to change."""


class DistributeError(RuntimeError):
    """A strategy cannot be made here; the message says why and what to change."""


def first_line(error):
    """The first line of ``error``'s message (at most 200 characters), or its type's name when
    it has none: another library's error, quoted inside one of ours."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


__all__ = ["CacheMismatch", "DataError", "DistributeError", "MethodError", "SpecError", "StageError", "first_line"]


def io_problem(error):
    """What went wrong, in one line, when ``error`` is a file-system failure (no space left, a
    read-only or vanished folder, no permission): ``path: reason``; else ``None``. Python,
    h5py (Keras weights) and TensorFlow's file writers each report it their own way."""
    if isinstance(error, OSError):
        if error.strerror:
            return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
        return str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    tf_errors = getattr(sys.modules.get("tensorflow"), "errors", None)
    if tf_errors is not None and isinstance(error, (tf_errors.PermissionDeniedError, tf_errors.ResourceExhaustedError)):
        text = str(error).splitlines()[0] if str(error) else ""
        if isinstance(error, tf_errors.PermissionDeniedError) or "space" in text.lower():
            return text[:300]
    return None
