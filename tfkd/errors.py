"""The errors tfkd raises, each reported as one line (``tfkd: error: ...`` or ``file:line: ...``).

Every module imports them from here; the modules that first defined them
(:mod:`tfkd.spec`, :mod:`tfkd.runner`, :mod:`tfkd.data`, :mod:`tfkd.distribute`,
:mod:`tfkd.methods.base`, :mod:`tfkd.methods.soft_target.cache`) re-export them.

This module imports nothing: no other tfkd module, no TensorFlow.
"""


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
