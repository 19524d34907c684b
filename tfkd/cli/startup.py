"""What the ``tfkd`` command sets up before a command runs: logging, and TensorFlow imported
(or a spec loaded) with TensorFlow's C++ start-up lines kept off the terminal."""

import contextlib
import logging
import os
import re
import sys
import tempfile


def setup_logging(verbose, quiet=False):
    from tfkd.progress import LineStartHandler, LineTracking

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    # TensorFlow's C++ warning and error lines at run time ("E0000 ... oneDNN supports DT_INT64
    # only on platforms with AVX-512" on some CPUs, "W0000 ... Local rendezvous is aborting"
    # at each epoch's end) stay off the terminal unless --verbose: TensorFlow's errors reach
    # tfkd as exceptions, which say what went wrong
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")
    # stderr carries the log lines and (tfkd run sends stdout there) the progress bars: a log
    # line after a bar's open line starts a line of its own
    if not isinstance(sys.stderr, LineTracking):
        sys.stderr = LineTracking(sys.stderr)
    handler = LineStartHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s tfkd %(levelname).1s %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler])
    for handler in logging.getLogger().handlers:  # the terminal's level (a run's log.txt has its own)
        handler.setLevel(level)
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # library warnings go through logging, shown with --verbose
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose else logging.ERROR)


# TensorFlow's C++ start-up lines: absl's pre-init warning, glog-style lines such as
# "I0000 00:00:1795.123 8158 port.cc:153] oneDNN custom operations are on..." and the
# continuation of cpu_feature_guard's message
START_UP_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\] "
    r"|To enable the following instructions: .*rebuild TensorFlow"
)


_runtime_started = False  # by import_tensorflow, in this process


@contextlib.contextmanager
def native_stderr_captured(into):
    """Point file descriptor 2 (where C++ libraries write) at a temporary file while the body
    runs; what was written there is appended to the list ``into`` afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            into.append(captured.read().decode("utf-8", "replace"))


def import_tensorflow(multi_worker=False):
    """Import TensorFlow, Keras and keras-hub with their C++ start-up lines (oneDNN, CUDA, CPU
    features, absl) kept off the terminal; they are shown if the import itself fails. With
    ``multi_worker``, TensorFlow starts by joining the ``TF_CONFIG`` cluster
    (:func:`tfkd.distribute.start_multi_worker`). Its runtime starts here, once a process, even
    where the modules were imported before (by a user's module, or a process this one was forked
    from): starting it prints lines of its own ("failed call to cuInit" where no GPU is)."""
    global _runtime_started
    if _runtime_started:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # this process's C++ INFO and WARNING lines
    captured = []
    try:
        with native_stderr_captured(captured):
            import keras  # noqa: F401
            import keras_hub  # noqa: F401
            import tensorflow as tf

            if multi_worker:
                from tfkd.distribute import start_multi_worker

                start_multi_worker()
            tf.config.list_logical_devices("CPU")
        _runtime_started = True
    except KeyboardInterrupt:  # Ctrl-C while TensorFlow loads: its start-up lines are no error
        raise
    except BaseException:
        sys.stderr.write("".join(captured))
        raise


def load_spec(path, overrides=()):
    """:func:`tfkd.spec.load_spec`, keeping off the terminal the TensorFlow start-up lines that
    a spec's ``imports`` (a user module importing keras) print; anything else they write to
    stderr is shown."""
    from tfkd.spec import load_spec as load

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    captured = []
    try:
        with native_stderr_captured(captured):
            return load(path, overrides, check_models=True)
    finally:
        sys.stderr.write("".join(line for line in "".join(captured).splitlines(True) if not START_UP_LINE.match(line)))
