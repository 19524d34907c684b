"""How the ``tfkd`` command reports a mistake: one line on stderr and an exit status, no
traceback. :func:`reports_errors` wraps every command's handler."""

import functools
import signal
import sys

from tfkd.errors import DataError, DistributeError, SpecError, StageError
from tfkd.stopping import StopSignal, interrupts_kept

EXIT_RUN_ERROR = 1
EXIT_SPEC_ERROR = 2
EXIT_INTERRUPTED = 130  # Ctrl-C; SIGTERM during tfkd run gives 143 (tfkd.stopping)


def fail(message, code):
    """Print ``tfkd: error: MESSAGE`` on stderr; ``code``, for the command to return."""
    print(f"tfkd: error: {message}", file=sys.stderr)
    return code


def run_errors():
    """The exception types a run reports as one line."""
    return DataError, StageError, DistributeError


def reports_errors(handler=None, *, interrupted=None):
    """Decorate a command's handler so that a mistake is one line and an exit status:
    a :class:`~tfkd.spec.SpecError` prints its own message (``FILE:LINE: key: ...``) and gives
    ``EXIT_SPEC_ERROR``; an error of a run (:func:`run_errors`) prints ``tfkd: error: ...`` and
    gives ``EXIT_RUN_ERROR``. Any other exception is a bug and keeps its traceback. With
    ``interrupted``, Ctrl-C prints that message and gives ``EXIT_INTERRUPTED``, also when code
    inside swallowed it (:func:`~tfkd.stopping.interrupts_kept`).

    Use as ``@reports_errors`` or ``@reports_errors(interrupted="...")``."""
    if handler is None:
        return functools.partial(reports_errors, interrupted=interrupted)

    @functools.wraps(handler)
    def reporting(*args, **kwargs):
        try:
            # Ctrl-C that Keras swallows (tracing a layer, loading weights) and turns into an
            # error of its own, or into nothing, still interrupts the command
            with interrupts_kept():
                return handler(*args, **kwargs)
        except SpecError as e:
            print(str(e), file=sys.stderr)
            return EXIT_SPEC_ERROR
        except KeyboardInterrupt as e:
            if interrupted is None:
                raise
            if isinstance(e, StopSignal):  # SIGTERM or SIGINT under tfkd.stopping: 128 + the signal
                name = signal.Signals(e.signum).name
                return fail(e.message or f"{interrupted} ({name})", e.exit_code)
            return fail(interrupted, EXIT_INTERRUPTED)
        except Exception as e:
            if isinstance(e, run_errors()):
                return fail(str(e), EXIT_RUN_ERROR)
            raise

    return reporting
