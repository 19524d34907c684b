"""Progress output: Keras progress bars on a terminal, plain log lines everywhere else.

A progress bar redraws one line with control codes; written to a file or a pipe (CI, ``tee``,
``nohup``) it becomes one run-on line. So bars are drawn only when the output is a terminal
and ``TFKD_QUIET_PROGRESS`` (``tfkd --quiet`` sets it) is not set; otherwise the logs, which
report steps/s and tokens/s every ``log_every`` steps, are the progress.
"""

import os
import sys

QUIET_ENV = "TFKD_QUIET_PROGRESS"


def bars_enabled():
    """Whether progress bars are drawn (a terminal, not quiet)."""
    if os.environ.get(QUIET_ENV):
        return False
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(total, unit):
    """A ``keras.utils.Progbar`` of ``total`` ``unit`` when bars are drawn, else ``None``."""
    if not total or not bars_enabled():
        return None
    import keras

    return keras.utils.Progbar(total, unit_name=unit)
