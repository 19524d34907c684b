"""Progress output: Keras progress bars on a terminal, plain log lines everywhere else.

A progress bar redraws one line with control codes; written to a file or a pipe (CI, ``tee``,
``nohup``) it becomes one run-on line. So bars are drawn only when the output is a terminal
and ``TFKD_QUIET_PROGRESS`` (``tfkd --quiet`` sets it) is not set; otherwise the logs, which
report steps/s and tokens/s every ``log_every`` steps, are the progress.
"""

import logging
import os
import sys

QUIET_ENV = "TFKD_QUIET_PROGRESS"


class LineTracking:
    """A text stream (the terminal's stderr) that knows whether what was last written to it
    ended a line: a progress bar redraws its line with ``\\r`` and leaves it open."""

    def __init__(self, stream):
        self.stream = stream
        self.at_line_start = True

    def write(self, text):
        written = self.stream.write(text)
        if text:
            self.at_line_start = text.endswith("\n")
        return written

    def __getattr__(self, name):  # flush, isatty, fileno, encoding, ...
        return getattr(self.stream, name)


class LineStartHandler(logging.StreamHandler):
    """A log handler that starts a new line first when a progress bar left the current one
    open, so that a log line is never glued onto a bar."""

    def emit(self, record):
        if isinstance(self.stream, LineTracking) and not self.stream.at_line_start:
            self.stream.write("\n")
        super().emit(record)


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


__all__ = ["QUIET_ENV", "LineStartHandler", "LineTracking", "bars_enabled", "progress_bar"]
