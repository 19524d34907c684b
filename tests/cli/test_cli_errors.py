"""``tfkd.cli.errors.reports_errors``: a command's mistakes as one line and an exit status, and
Ctrl-C as an interruption even where Keras swallowed it."""

import os
import signal
import time

import pytest

from tfkd.cli.errors import EXIT_INTERRUPTED, EXIT_RUN_ERROR, EXIT_SPEC_ERROR, reports_errors
from tfkd.errors import SpecError, StageError


def tracing_a_layer(then):
    """Ctrl-C while Keras traces a layer: it catches the KeyboardInterrupt and raises a
    ValueError of its own ("Invalid dtype: NoneType" from a position encoding), or goes on."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except BaseException:
        if then == "raise":
            raise ValueError("Exception encountered when calling SinePositionEncoding.call()") from None
    return 0


@pytest.mark.parametrize("then", ["raise", "return"])
def test_ctrl_c_a_command_s_code_swallowed_is_an_interruption_not_a_traceback_or_success(then, capsys):
    with pytest.raises(KeyboardInterrupt):  # tfkd.cli.main says "interrupted" and exits 130
        reports_errors(tracing_a_layer)(then)
    assert reports_errors(interrupted="translation interrupted")(tracing_a_layer)(then) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "tfkd: error: translation interrupted\n"


def test_mistakes_are_one_line_and_bugs_keep_their_traceback(capsys):
    def raising(error):
        raise error

    assert reports_errors(raising)(SpecError("spec.yaml:3: decode.beam_size: expected > 0")) == EXIT_SPEC_ERROR
    assert reports_errors(raising)(StageError("runs/x: no such file or directory")) == EXIT_RUN_ERROR
    assert capsys.readouterr().err.splitlines() == [
        "spec.yaml:3: decode.beam_size: expected > 0",
        "tfkd: error: runs/x: no such file or directory",
    ]
    with pytest.raises(ValueError, match="a bug"):
        reports_errors(raising)(ValueError("a bug"))
