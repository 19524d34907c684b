"""Progress bars and log lines share the terminal: a log line never lands on a bar's open line."""

import io
import logging
import os
import pty
import re
import subprocess
import sys

from helpers import REPO

from tfkd.progress import LineStartHandler, LineTracking


def test_a_log_line_after_an_open_bar_line_starts_a_line_of_its_own():
    terminal = io.StringIO()
    stream = LineTracking(terminal)
    handler = LineStartHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("tests.progress")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        stream.write("\r 3/10 [===>......]")
        logger.info("step 3/10")
        stream.write("\r 4/10 [====>.....]\n")
        logger.info("done")
    finally:
        logger.removeHandler(handler)
    assert terminal.getvalue() == "\r 3/10 [===>......]\nstep 3/10\n\r 4/10 [====>.....]\ndone\n"


SCRIPT = """
import contextlib, logging, sys
from tfkd.cli.startup import setup_logging
from tfkd.progress import progress_bar
setup_logging(False)
with contextlib.redirect_stdout(sys.stderr):  # as tfkd run does
    bar = progress_bar(10, "step")
    bar.update(3)
    logging.getLogger("tfkd").info("step 3/10 | loss 1.000")
    bar.update(10)
"""


def test_on_a_real_terminal_the_bar_and_the_log_lines_stay_apart():
    main, child = pty.openpty()
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("TFKD_QUIET_PROGRESS", None)
    process = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=child, stderr=child, env=env)
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=120) == 0, output.decode(errors="replace")
    text = output.decode(errors="replace")
    assert "3/10" in text and "10/10" in text  # bars were drawn (a terminal)
    lines = re.split(r"[\r\n]+", text)
    logged = [line for line in lines if "tfkd I step 3/10" in line]
    assert logged and all(re.match(r"^\d\d:\d\d:\d\d tfkd I step 3/10", line) for line in logged), text
