"""``python -m tfkd.cli ARGS`` without paying for TensorFlow's import each time: a fork server.

A ``tfkd`` command spends about 7 s of CPU importing TensorFlow, Keras and keras-hub before it
does anything, and the suite runs well over a hundred of them. :func:`run` forks each command
from a server process that has imported those three once (and nothing of tfkd, whose modules
read the environment when imported): the child takes the command's environment, folder and
standard streams, runs ``tfkd.cli`` as ``python -m`` would, and exits with its status, so a test
gets a :class:`subprocess.CompletedProcess` as from ``subprocess.run``. TensorFlow's runtime
starts in the child (the server never runs an op), so device settings and ``TF_CONFIG`` work as
in a fresh process.

What a forked command cannot show is its own start-up: TensorFlow's C++ start-up lines were
printed once, by the server, and ``sys.modules`` already holds TensorFlow. Tests of start-up
(the one-line terminal with TensorFlow's lines, what a command imports, interrupts while
TensorFlow loads) pass ``fresh=True`` to :func:`helpers.tfkd` and get a real process. One
server runs per pytest process; it answers one command at a time.

Run as a script, this module is the server: it reads one JSON request a line on stdin and
answers ``{"pid": N}`` when the child starts and ``{"returncode": N}`` when it ends
(``-SIGNAL`` for a child a signal ended, as ``subprocess`` reports it).
"""

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading

_server = None
_lock = threading.Lock()


def _start_server():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
        bufsize=1,
    )


def _answer(server, timeout):
    ready, _, _ = select.select([server.stdout], [], [], timeout)
    if not ready:
        return None
    line = server.stdout.readline()
    if not line:
        raise RuntimeError("the tfkd fork server died")
    return json.loads(line)


class ForkedCommand:
    """``tfkd ARGS`` forked from the server, as a ``subprocess.Popen`` with its stdout and
    stderr captured: ``pid``, ``send_signal``, ``poll``, ``wait``, ``communicate`` (text),
    ``returncode``, and ``stderr_so_far`` while it runs."""

    def __init__(self, args, env, cwd=None, input=None):
        global _server
        _lock.acquire()  # released when the command has ended
        try:
            if _server is None or _server.poll() is not None:
                _server = _start_server()
            self.args, self.returncode = ["tfkd", *args], None
            self._folder = tempfile.TemporaryDirectory(prefix="tfkd-forked-")
            self._streams = {name: os.path.join(self._folder.name, name) for name in ("stdin", "stdout", "stderr")}
            with open(self._streams["stdin"], "w", encoding="utf-8") as f:
                f.write(input or "")
            request = {
                "args": list(args),
                "env": dict(env),
                "cwd": os.path.abspath(cwd or os.getcwd()),
                **self._streams,
            }
            _server.stdin.write(json.dumps(request) + "\n")
            _server.stdin.flush()
            self.pid = _answer(_server, 120)["pid"]
        except BaseException:
            _lock.release()
            raise

    def send_signal(self, number):
        if self.returncode is None:
            os.kill(self.pid, number)

    def poll(self):
        """The return code once the command has ended, else ``None``."""
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None

    def stderr_so_far(self):
        """What the command has written to its stderr until now (it may be running; ``""``
        before the child has opened it)."""
        try:
            with open(self._streams["stderr"], encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait(self, timeout=None):
        if self.returncode is None:
            answer = _answer(_server, timeout)
            if answer is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = answer["returncode"]
            _lock.release()
        return self.returncode

    def communicate(self, timeout=None):
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.wait(60)
            raise
        outputs = []
        for name in ("stdout", "stderr"):
            with open(self._streams[name], encoding=None, errors="strict") as f:
                outputs.append(f.read())
        self._folder.cleanup()
        return tuple(outputs)


def run(args, env, cwd=None, input=None, timeout=900):
    """``tfkd ARGS`` forked from the server with environment ``env`` in folder ``cwd``, ``input``
    (text) on its standard input: a ``CompletedProcess`` with text stdout and stderr, as
    ``subprocess.run(..., capture_output=True, text=True)`` gives; ``TimeoutExpired`` after
    ``timeout`` seconds (the command is killed)."""
    command = ForkedCommand(args, env, cwd=cwd, input=input)
    stdout, stderr = command.communicate(timeout)
    return subprocess.CompletedProcess(command.args, command.returncode, stdout, stderr)


def _child(request):
    """In the forked child: become ``python -m tfkd.cli ARGS`` and never return."""
    import io
    import runpy
    import traceback

    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for number in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(number, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, name, flags in (
            (0, "stdin", os.O_RDONLY),
            (1, "stdout", os.O_WRONLY | os.O_CREAT),
            (2, "stderr", os.O_WRONLY | os.O_CREAT),
        ):
            opened = os.open(request[name], flags)
            os.dup2(opened, fd)
            os.close(opened)
        encoding = sys.stdout.encoding
        sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), encoding=encoding, errors="strict")
        sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), encoding=encoding, errors="strict")
        sys.stderr = io.TextIOWrapper(
            open(2, "wb", closefd=False), encoding=encoding, errors="backslashreplace", line_buffering=True
        )
        sys.argv = ["-m", *request["args"]]
        # as python -m sets it: the folder, then PYTHONPATH's entries, then the rest
        extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:] = [request["cwd"], *extra, *(p for p in sys.path[1:] if p not in extra)]
        try:
            runpy.run_module("tfkd.cli", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as stop:
            if stop.code is None:
                code = 0
            elif isinstance(stop.code, int):
                code = stop.code
            else:
                print(stop.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            traceback.print_exc()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            traceback.print_exc()
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                code = code or 120
    finally:
        os._exit(code)


def _serve():
    import keras  # noqa: F401
    import keras_hub  # noqa: F401
    import tensorflow  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)}))
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
