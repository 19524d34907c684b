"""A graceful stop on SIGTERM (a scheduler's preemption notice) and SIGINT (Ctrl-C).

While :func:`handling_stop_signals` is active (``tfkd run``), the first signal does not kill
the command:

- during a training loop that checkpoints (:func:`checkpointing`, entered by every stage's
  ``fit``), it asks the loop to stop: the current optimizer step finishes, the checkpoint is
  written (atomically, as every checkpoint) and :class:`StopSignal` ends the command, whose
  last line says where it stopped and which command goes on from there;
- anywhere else (vocabulary, teacher cache, evaluation, export, between stages) it stops the
  stage at once, as Ctrl-C always has: the stage runs again, or resumes its partial work.

The command then exits with ``128 + signal`` (143 for SIGTERM, 130 for SIGINT). A second signal,
or the grace period (``train.preemption_grace_s``) running out before the stop is done, exits
at once with the same status: every file a stage writes is renamed into place whole, so the last
good checkpoint and the finished stages are on disk either way.

Multi-worker runs keep the default handlers: the workers would have to agree on the step to stop
at, which takes a collective the signal cannot wait for; they go on from the last periodic
checkpoint, as after SIGKILL.
"""

import contextlib
import logging
import os
import shlex
import signal
import sys
import threading
import time

log = logging.getLogger("tfkd")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal(KeyboardInterrupt):
    """The command stops because of ``signum``: at once, or (with ``message``) after writing a
    checkpoint. A ``KeyboardInterrupt``, so that every clean-up Ctrl-C runs runs for it too."""

    def __init__(self, signum, message=None):
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.message = message

    @property
    def exit_code(self):
        return 128 + self.signum


class _State:
    def __init__(self):
        self.installed = False
        self.grace_seconds = None
        self.requested = None  # the first signal's number
        self.since = None  # time.monotonic() at the first signal
        self.loops = 0  # checkpointing training loops running
        self.timer = None


_state = _State()
_stopped_by = None  # the signal that stopped the last handling_stop_signals block, if one did


def resume_command():
    """The command line that goes on from where this one stopped (the same command)."""
    return shlex.join(["tfkd", *sys.argv[1:]])


def _exit_now(signum, why):
    # from a signal handler or the grace timer's thread: no logging (its lock may be held)
    line = f"tfkd: error: stopped at once ({why}); the finished stages and the last good checkpoint are kept\n"
    try:
        sys.stderr.flush()
    except Exception:
        pass
    os.write(2, line.encode("utf-8", "replace"))
    os._exit(128 + signum)


def _handle(signum, frame):
    name = signal.Signals(signum).name
    if _state.requested is not None:
        _exit_now(signum, f"a second {name}")
    _state.requested, _state.since = signum, time.monotonic()
    if not _state.loops:
        raise StopSignal(signum)
    grace = _state.grace_seconds
    log.info(
        "%s: stopping after the current step, once its checkpoint is written (at most %gs); a second "
        "signal stops at once",
        name,
        grace,
    )
    _state.timer = threading.Timer(grace, _exit_now, args=(signum, f"{name}: the grace period of {grace:g}s ran out"))
    _state.timer.daemon = True
    _state.timer.start()


@contextlib.contextmanager
def handling_stop_signals(grace_seconds):
    """Handle SIGTERM and SIGINT as the module says while the block runs (main thread only;
    elsewhere, and nested, it does nothing)."""
    if _state.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    global _stopped_by
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _state.__init__()
    _stopped_by = None
    _state.installed, _state.grace_seconds = True, float(grace_seconds)
    for s in SIGNALS:
        signal.signal(s, _handle)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stopped_by = _state.requested
        if _state.timer is not None:
            _state.timer.cancel()
        _state.__init__()


@contextlib.contextmanager
def checkpointing():
    """Mark a training loop that stops itself at a step end when asked (:func:`stop_requested`)."""
    _state.loops += 1
    try:
        yield
    finally:
        _state.loops -= 1


def stop_requested():
    """The number of the signal that asked to stop, or ``None``."""
    return _state.requested


def seconds_since_request():
    return time.monotonic() - _state.since if _state.since is not None else 0.0


def stopped_by():
    """The signal that stopped the last :func:`handling_stop_signals` block, or ``None``."""
    return _stopped_by


def exit_after_stop(code):
    """End a command a signal stopped, its last line printed: flush and leave at once. The
    interpreter's teardown of TensorFlow's threads and data pipelines took up to half a minute
    after the checkpoint here, longer than a preemption notice leaves; every file is written."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    logging.shutdown()
    os._exit(code)


def raise_if_requested():
    """Stop here (between stages, before the report) if a signal asked to stop."""
    if _state.requested is not None:
        raise StopSignal(_state.requested)


@contextlib.contextmanager
def interrupts_kept():
    """Run a block that may swallow ``KeyboardInterrupt``: Keras' and keras-hub's loading code
    catches every exception of a layer (bare ``except:`` and ``except Exception`` around file
    reads, tracing and variable assignment) and reports the lot as one ``ValueError``, or goes
    on. A SIGINT or SIGTERM whose handler raised inside the block still stops the command: the
    exception it raised leaves the block, in place of whatever the block raised or returned
    (main thread only; elsewhere the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = []
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def relay(signum, frame):
        try:
            previous[signum](signum, frame)
        except BaseException as e:
            raised.append(e)
            _swallowable.append(e)
            raise

    relayed = [s for s, handler in previous.items() if callable(handler)]
    for s in relayed:
        signal.signal(s, relay)
    try:
        yield
    except BaseException as e:
        if raised and e is not raised[0]:
            raise raised[0] from None
        raise
    finally:
        for s in relayed:
            signal.signal(s, previous[s])
        _swallowable[:] = [e for e in _swallowable if all(e is not r for r in raised)]
    if raised:
        raise raised[0]


# what the signal handlers of the interrupts_kept blocks running now raised
_swallowable = []


def raise_if_interrupted():
    """Between two pieces of long work (batches of translations): raise the interrupt a signal
    handler raised inside an :func:`interrupts_kept` block if the code that got it swallowed it
    and went on, instead of at the block's end."""
    if _swallowable:
        raise _swallowable[0]


__all__ = [
    "StopSignal",
    "checkpointing",
    "exit_after_stop",
    "handling_stop_signals",
    "interrupts_kept",
    "raise_if_interrupted",
    "raise_if_requested",
    "resume_command",
    "seconds_since_request",
    "stop_requested",
    "stopped_by",
]
