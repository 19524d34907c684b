"""``RUN/log.txt``: every log line of the commands that ran stages in a run folder."""

import logging
import os
import sys
import time


class RunLog(logging.Handler):
    """``RUN/log.txt``: the log lines of every command that ran stages there, appended, with
    dates. Lines logged before the run folder exists are kept until it does (and dropped if it
    never does)."""

    def __init__(self, path):
        super().__init__(logging.DEBUG)
        self.path = path
        self.pending = [f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(_command_line())}"]
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%Y-%m-%d %H:%M:%S"))

    def emit(self, record):
        self.write_line(self.format(record))

    def write_line(self, line):
        """Append ``line``; a log file that cannot be written (a full disk, a read-only run
        folder) is given up silently: the terminal has the same lines, and a log line must
        never stop a run nor hide its error."""
        if self.path is None:
            return
        self.pending.append(line)
        if os.path.isdir(os.path.dirname(self.path)):
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write("".join(p + "\n" for p in self.pending))
            except OSError:
                self.path = None
            self.pending = []


def _command_line():
    # the console script, or python -m tfkd.cli (whose argv[0] is tfkd/cli/__main__.py)
    command = sys.argv and sys.argv[0].endswith(("tfkd", os.path.join("cli", "__main__.py")))
    return ["tfkd", *sys.argv[1:]] if command else sys.argv
