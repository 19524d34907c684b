"""One writer per run directory: ``tfkd run`` (and ``tfkd average`` / ``tfkd export`` writing
into a run) hold ``RUN/LOCK`` while they write there; a second writer is refused in one line
naming the holder. Readers (``translate``, ``report``, ``config``) never take it.

The lock is an exclusive ``flock`` on ``RUN/LOCK``, which the kernel releases when its holder
dies, however it dies (a SIGKILL too): a lock left by a killed process on this host is taken
over at once, with a warning naming it. The file says who holds it (pid, host, command, since
when) and carries a heartbeat, rewritten every :data:`HEARTBEAT_SECONDS`: on shared storage
whose file system does not carry ``flock`` across hosts, a holder on another host counts as
alive until its heartbeat is :data:`STALE_AFTER_SECONDS` old. The file is emptied, never
removed, on release (removing it would let two processes lock two different files)."""

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time

from tfkd.errors import StageError

log = logging.getLogger("tfkd")

LOCK_FILE = "LOCK"
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0


class RunInUse(StageError):
    """Another live process writes the run directory; the message names it."""


def _now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _holder_text(holder):
    if not holder:
        return "another process (its lock file names none)"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} "
        f"({holder.get('command') or 'tfkd'})"
    )


def _read(handle):
    handle.seek(0)
    try:
        return json.loads(handle.read() or "null")
    except ValueError:  # being written
        return None


def _write(handle, holder):
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(holder))
    handle.flush()


def _remote_and_alive(holder, host):
    """Whether ``holder`` (the lock file's content) is a process on another host whose heartbeat
    is recent: shared storage may not carry ``flock`` between hosts."""
    if not holder or holder.get("host") == host:
        return False
    return time.time() - float(holder.get("heartbeat", 0)) < STALE_AFTER_SECONDS


@contextlib.contextmanager
def hold_run_dir(run_dir, command=None):
    """Hold the run directory ``run_dir`` (made if missing) for writing while the block runs;
    :class:`RunInUse` when another live process holds it. A run directory this made and in
    which nothing but the lock and the log was written is removed again."""
    made = not os.path.isdir(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
        # held until the block ends
        handle = open(os.path.join(run_dir, LOCK_FILE), "a+", encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
            raise
        # a folder nobody may write (or a full disk) needs no lock: the command reads what is finished there, and
        # the first stage that has to write says why it cannot
        log.debug("%s: not locked (%s)", run_dir, e.strerror)
        handle = None
    if handle is None:
        yield
        return
    try:
        _lock(handle, run_dir)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command or " ".join(["tfkd", *sys.argv[1:]]),
            "since": _now(),
            "heartbeat": time.time(),
        }
        try:
            with _heartbeat(handle, holder):
                yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                handle.seek(0)
                handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()
        if made and set(os.listdir(run_dir)) <= {LOCK_FILE, "log.txt"}:  # nothing was written
            shutil.rmtree(run_dir, ignore_errors=True)


def _lock(handle, run_dir):
    """Take the ``flock`` on the lock file ``handle``; :class:`RunInUse` when a live process
    holds it, on this host (the kernel's lock) or on another (its heartbeat)."""
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunInUse(
            f"{run_dir}: in use by {_holder_text(_read(handle))}; "
            "wait for it to end or stop it (one command writes a run directory at a time)"
        ) from None
    previous = _read(handle)
    if _remote_and_alive(previous, socket.gethostname()):
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        raise RunInUse(
            f"{run_dir}: in use by {_holder_text(previous)} (heartbeat "
            f"{time.time() - float(previous['heartbeat']):.0f}s ago); wait for it to end or stop it"
        )
    if previous:
        log.warning("%s: took over the lock of %s, which is no longer running", run_dir, _holder_text(previous))


@contextlib.contextmanager
def _heartbeat(handle, holder):
    """``holder`` written to the lock file, its heartbeat renewed every
    :data:`HEARTBEAT_SECONDS` while the block runs (what a process on another host reads)."""
    with contextlib.suppress(OSError):  # a full disk: the flock alone keeps others out
        _write(handle, holder)
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(OSError, ValueError):
                _write(handle, dict(holder, heartbeat=time.time()))

    heart = threading.Thread(target=beat, name="tfkd-run-lock", daemon=True)
    heart.start()
    try:
        yield
    finally:
        stop.set()
        heart.join()


def hold_if_inside(run_dir, path):
    """:func:`hold_run_dir` when ``path`` (what a command writes) lies inside ``run_dir``; a
    command writing elsewhere only reads the run and needs no lock."""
    run, target = os.path.realpath(run_dir), os.path.realpath(path)
    if os.path.commonpath([run, target]) == run:
        return hold_run_dir(run_dir)
    return contextlib.nullcontext()


__all__ = ["HEARTBEAT_SECONDS", "LOCK_FILE", "STALE_AFTER_SECONDS", "RunInUse", "hold_if_inside", "hold_run_dir"]
