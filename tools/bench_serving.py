"""Drive an exported SavedModel the way a server is driven: many clients at once, for a fixed
time, then for a long soak, then with hostile requests.

    python tools/bench_serving.py runs/quickstart/export/quickstart -i $TFKD_DATA_DIR/multi30k_deen/test.de
    python tools/bench_serving.py EXPORT -i FILE --clients 1,4,16,64 --lines 1,8 --seconds 30
    python tools/bench_serving.py EXPORT -i FILE --soak-minutes 20 --soak-clients 16
    python tools/bench_serving.py EXPORT -i FILE --hostile
    python tools/bench_serving.py EXPORT -i FILE --server     # through tensorflow_model_server's REST API

``EXPORT`` is a model folder (its newest version is served) or one version folder. Requests go
through the export's ``serving_default`` loaded in this process (what the serving runtime runs),
or with ``--server`` through a ``tensorflow_model_server`` (on PATH) that this tool starts twice,
without and with the export's ``assets.extra/batching_parameters.txt``, over REST; ``--rest URL``
drives a server that is already running (``http://host:8501/v1/models/NAME``).

Every answer is compared with the answer to the same line sent alone (computed first, one line
a request): the load and soak tables count the lines that differ. Resident memory is sampled
through the run (this process's, or the server's). The tool imports only ``tensorflow`` and
``tensorflow_text`` (and NumPy), as a serving machine has them. ``--json FILE`` writes every
table's numbers.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up lines


def version_folder(path):
    """``path`` itself if it holds a SavedModel, else its newest numbered version."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted((int(n) for n in os.listdir(path) if n.isdigit()), reverse=True)
    if not versions:
        sys.exit(f"{path}: neither a SavedModel nor a model folder with numbered versions")
    return os.path.join(path, str(versions[0]))


def export_info(version):
    with open(os.path.join(version, "assets.extra", "tfkd.json")) as f:
        return json.load(f)


def resident_mb(pid=None, field="VmRSS"):
    """Resident memory of a process (this one by default), from /proc: ``VmRSS`` (now) or
    ``VmHWM`` (its peak since it started or since :func:`reset_peak`)."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak():
    """Start this process's peak resident memory (``VmHWM``) over from what it holds now (not
    ``ru_maxrss``, which a process started by a larger one inherits from it)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class SignatureClient:
    """The export's ``serving_default`` in this process; ``client(lines)`` -> its text output per
    line (``lines``: ``str`` or ``bytes``)."""

    def __init__(self, version):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizers' ops)

        self.tf = tf
        info = export_info(version)
        self.input, self.output, self.batch_size = info["input"], info["output"], info["batch_size"]
        self.signature = tf.saved_model.load(version).signatures["serving_default"]
        self.pid = os.getpid()

    def call(self, tensor):
        return self.signature(**{self.input: tensor})

    def __call__(self, lines):
        outputs = self.call(self.tf.constant(lines, self.tf.string))[self.output].numpy()
        return [x.decode("utf-8") for x in outputs]


class RestClient:
    """TF Serving's REST ``:predict`` (row form) at ``url`` (``http://host:port/v1/models/NAME``)."""

    def __init__(self, url, version, pid=None):
        info = export_info(version)
        self.output = info["output"]
        self.url = url.rstrip("/") + ":predict"
        self.pid = pid  # the server's, when this tool started it

    def __call__(self, lines):
        lines = [x.decode("utf-8") if isinstance(x, bytes) else x for x in lines]
        body = json.dumps({"signature_name": "serving_default", "instances": lines}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            predictions = json.load(response)["predictions"]
        return [row[self.output] if isinstance(row, dict) else row for row in predictions]


class MemorySampler(threading.Thread):
    """Resident memory of ``pid`` every ``interval`` seconds: ``samples`` of ``(seconds, MB)``."""

    def __init__(self, pid, interval):
        super().__init__(daemon=True)
        self.pid, self.interval, self.samples = pid, interval, []
        self.stopped = threading.Event()
        self.start_time = time.time()

    def run(self):
        while not self.stopped.is_set():
            self.samples.append((time.time() - self.start_time, resident_mb(self.pid)))
            self.stopped.wait(self.interval)

    def stop(self):
        self.stopped.set()
        self.join()
        self.samples.append((time.time() - self.start_time, resident_mb(self.pid)))
        return self.samples


def references(client, pool):
    """Each line's answer when sent alone."""
    return [client([line])[0] for line in pool]


def drive(client, pool, expected, clients, lines_per_request, seconds, memory_pid=None, interval=0.5):
    """``clients`` threads sending requests of ``lines_per_request`` consecutive pool lines for
    ``seconds``; requests/s, lines/s, latency percentiles (ms), errors, lines that differ from
    their answer alone, and resident memory (first, peak, last, MB/min slope)."""
    lock = threading.Lock()
    cursor = [0]
    latencies, errors, differing, served = [], [], [0], [0]
    deadline = time.time() + seconds

    def client_loop():
        while time.time() < deadline:
            with lock:
                start = cursor[0]
                cursor[0] = (start + lines_per_request) % len(pool)
            index = [(start + i) % len(pool) for i in range(lines_per_request)]
            begin = time.perf_counter()
            try:
                answers = client([pool[i] for i in index])
            except Exception as error:  # noqa: BLE001 (counted and reported, the load goes on)
                with lock:
                    errors.append(f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
                continue
            latency = time.perf_counter() - begin
            with lock:
                latencies.append(latency)
                served[0] += len(index)
                differing[0] += sum(answer != expected[i] for answer, i in zip(answers, index))

    sampler = MemorySampler(memory_pid, interval) if memory_pid else None
    if sampler:
        sampler.start()
    started = time.time()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.time() - started
    samples = sampler.stop() if sampler else []
    latencies_ms = np.asarray(latencies) * 1000
    row = {
        "clients": clients,
        "lines_per_request": lines_per_request,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "lines_per_s": round(served[0] / elapsed, 2),
        "p50_ms": round(float(np.percentile(latencies_ms, 50)), 1) if len(latencies) else None,
        "p95_ms": round(float(np.percentile(latencies_ms, 95)), 1) if len(latencies) else None,
        "p99_ms": round(float(np.percentile(latencies_ms, 99)), 1) if len(latencies) else None,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "lines": served[0],
        "lines_differing": differing[0],
    }
    if samples:
        row.update(memory_summary(samples))
    return row


def memory_summary(samples, warm_up=0.1):
    """First, peak and last resident MB, and the least-squares slope (MB per minute) over the
    samples after the first ``warm_up`` fraction of the run."""
    seconds, mb = (np.asarray(x) for x in zip(*samples))
    kept = seconds >= seconds[-1] * warm_up
    slope = np.polyfit(seconds[kept] / 60, mb[kept], 1)[0] if kept.sum() >= 2 else float("nan")
    return {
        "rss_first_mb": round(float(mb[0]), 1),
        "rss_peak_mb": round(float(mb.max()), 1),
        "rss_last_mb": round(float(mb[-1]), 1),
        "rss_slope_mb_per_min": round(float(slope), 3),
        "rss_samples": len(samples),
    }


def hostile_cases(pool):
    """What a server may be sent: name -> list of lines (bytes)."""
    sentence = pool[0].encode() if isinstance(pool[0], str) else pool[0]
    return {
        "10,000 lines": [sentence] * 10000,
        "1 MB line": [("Ein Mann " * 116509).encode()],
        "1 MB word": [b"a" * 1000000],
        "not UTF-8": [b"Ein \xff\xfe Mann \xc3", sentence],
        "NUL and controls": ["Ein\x00Mann\x07 \x1b[31m f\u00e4hrt\r\x0b".encode()],
        "RTL and combining": [
            "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd e\u0301\u0301\u0301 Z\u0336".encode()
        ],
        "empty request": [],
    }


def hostile(client, pool):
    """Each hostile request through the in-process signature: seconds, rows answered, the peak
    resident memory it added to a process that has answered one full call (``batch_size``
    lines), and the answer or the signature's error; and a tensor of numbers."""
    tf = client.tf
    client([pool[0]] * client.batch_size)  # what one full call needs is not what a request adds
    rows = []
    for name, lines in hostile_cases(pool).items():
        reset_peak()
        before = resident_mb()
        begin = time.time()
        try:
            answers = client(lines)
            outcome = f"{len(answers)} answers" + (f", first {answers[0][:40]!r}" if answers else "")
        except Exception as error:  # noqa: BLE001 (the row says what the signature answered)
            answers, outcome = None, f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
        rows.append(
            {
                "request": name,
                "lines": len(lines),
                "seconds": round(time.time() - begin, 2),
                "answered": answers is not None,
                "peak_mb_added": round(resident_mb(field="VmHWM") - before, 1),
                "outcome": outcome,
            }
        )
    begin = time.time()
    try:
        client.call(tf.constant([1, 2]))
        outcome, answered = "answered", True
    except Exception as error:  # noqa: BLE001
        outcome, answered = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}", False
    rows.append(
        {
            "request": "int32 tensor",
            "lines": 2,
            "seconds": round(time.time() - begin, 2),
            "answered": answered,
            "peak_mb_added": 0.0,
            "outcome": outcome,
        }
    )
    return rows


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModelServer:
    """A ``tensorflow_model_server`` serving the model folder over REST on a free port, with or
    without the export's batching parameters; a context manager that waits until the model is
    available."""

    def __init__(self, model_dir, name, batching_file=None, timeout=300):
        self.port = free_port()
        command = [
            shutil.which("tensorflow_model_server"),
            f"--rest_api_port={self.port}",
            f"--port={free_port()}",
            f"--model_name={name}",
            f"--model_base_path={os.path.abspath(model_dir)}",
        ]
        if batching_file:
            command += ["--enable_batching", f"--batching_parameters_file={os.path.abspath(batching_file)}"]
        self.command, self.timeout = command, timeout
        self.url = f"http://127.0.0.1:{self.port}/v1/models/{name}"

    def __enter__(self):
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"tensorflow_model_server exited: {self.process.stderr.read().decode()[-500:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    states = [v["state"] for v in json.load(response)["model_version_status"]]
                if "AVAILABLE" in states:
                    return self
            except (urllib.error.URLError, ConnectionError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        self.__exit__()
        sys.exit(f"tensorflow_model_server did not make {self.url} available in {self.timeout} s")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(30)


def table(rows, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("" if row.get(c) is None else str(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


LOAD_COLUMNS = [
    "clients",
    "lines_per_request",
    "requests_per_s",
    "lines_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "errors",
    "lines_differing",
    "rss_peak_mb",
]


def load_tables(client, pool, expected, args, label):
    rows = []
    for clients in args.clients:
        for lines in args.lines:
            row = drive(client, pool, expected, clients, lines, args.seconds, client.pid)
            row["via"] = label
            rows.append(row)
            print(f"{label}: {json.dumps(row)}", file=sys.stderr, flush=True)
    print(f"\n### {label}\n\n" + table(rows, LOAD_COLUMNS))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="a model folder (the newest version) or a version folder")
    parser.add_argument("-i", "--input", required=True, help="sentences, one a line (the pool requests draw from)")
    parser.add_argument("--pool", type=int, default=200, help="lines of --input used (default 200)")
    parser.add_argument("--clients", default="1,4,16,64", help="client threads, one table row each")
    parser.add_argument("--lines", default="1,8", help="lines per request, one table row each")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each row's load")
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="a soak of this length (0: none)")
    parser.add_argument("--soak-clients", type=int, default=16)
    parser.add_argument("--soak-lines", type=int, default=4, help="lines per request in the soak")
    parser.add_argument("--hostile", action="store_true", help="the hostile requests' table")
    parser.add_argument("--no-load", action="store_true", help="skip the load table")
    parser.add_argument("--server", action="store_true", help="also through tensorflow_model_server (on PATH)")
    parser.add_argument("--rest", metavar="URL", help="a running server's http://host:port/v1/models/NAME")
    parser.add_argument("--json", metavar="FILE", help="write every table's numbers here")
    args = parser.parse_args(argv)
    args.clients = [int(x) for x in args.clients.split(",")]
    args.lines = [int(x) for x in args.lines.split(",")]

    version = version_folder(args.export)
    with open(args.input, encoding="utf-8") as f:
        pool = [line.rstrip("\n") for _, line in zip(range(args.pool), f)]
    result = {"export": version, "pool": len(pool)}
    client = SignatureClient(version)
    started = time.time()
    expected = references(client, pool)
    result["one_at_a_time_seconds"] = round(time.time() - started, 1)
    print(f"{len(pool)} lines sent one at a time in {result['one_at_a_time_seconds']} s", file=sys.stderr)

    if not args.no_load:
        result["load"] = load_tables(client, pool, expected, args, "signature in process")
    if args.soak_minutes:
        soak = drive(client, pool, expected, args.soak_clients, args.soak_lines, args.soak_minutes * 60, client.pid, 5)
        result["soak"] = soak
        print(
            f"\n### soak: {args.soak_minutes:g} min, {args.soak_clients} clients, {args.soak_lines} lines a request\n"
        )
        print(table([soak], ["requests", "lines", "lines_per_s", "p50_ms", "p99_ms", "errors", "lines_differing"]))
        print(table([soak], ["rss_first_mb", "rss_peak_mb", "rss_last_mb", "rss_slope_mb_per_min", "rss_samples"]))
    if args.hostile:
        result["hostile"] = hostile(client, pool)
        print(
            "\n### hostile requests\n\n"
            + table(result["hostile"], ["request", "lines", "seconds", "answered", "peak_mb_added", "outcome"])
        )
    if args.rest:
        result["rest"] = load_tables(RestClient(args.rest, version), pool, expected, args, f"REST {args.rest}")
    if args.server:
        if not shutil.which("tensorflow_model_server"):
            print("\ntensorflow_model_server is not on PATH: no server rows (the in-process rows are the model's)")
            result["server"] = "tensorflow_model_server not on PATH"
        else:
            model_dir = os.path.dirname(os.path.abspath(version))
            name = os.path.basename(model_dir)
            batching = os.path.join(version, "assets.extra", "batching_parameters.txt")
            result["server"] = {}
            for label, batching_file in (("server", None), ("server, batching", batching)):
                with ModelServer(model_dir, name, batching_file) as server:
                    rest = RestClient(server.url, version, server.process.pid)
                    result["server"][label] = load_tables(rest, pool, expected, args, label)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
