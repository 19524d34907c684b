"""tools/bench_serving.py: the load rows (requests counted, latencies, errors, lines that differ
from their answer alone), the memory slope against NumPy's fit, and ``--server`` through a
stand-in ``tensorflow_model_server`` on PATH that serves the export's signature over TF
Serving's REST protocol (started without, then with, the export's batching parameters)."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO, tiny_transformer

sys.path.insert(0, os.path.join(REPO, "tools"))

import bench_serving  # noqa: E402

TOOL = os.path.join(REPO, "tools", "bench_serving.py")
POOL = ["a b", "c", "d a b", "b"]

# tensorflow_model_server's command line and REST protocol (model status, row-form :predict),
# answered by the export's signature; it records each command line it was started with
STAND_IN_SERVER = r"""
import json, os, sys, http.server
import tensorflow as tf
import tensorflow_text  # noqa: F401

flags = dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in sys.argv[1:])
with open(os.environ["STAND_IN_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
base, name = flags["model_base_path"], flags["model_name"]
version = max(int(v) for v in os.listdir(base) if v.isdigit())
signature = tf.saved_model.load(os.path.join(base, str(version))).signatures["serving_default"]
(input_name,) = signature.structured_input_signature[1]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        assert self.path == f"/v1/models/{name}"
        self.answer({"model_version_status": [{"version": str(version), "state": "AVAILABLE"}]})

    def do_POST(self):
        assert self.path == f"/v1/models/{name}:predict"
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        outputs = signature(**{input_name: tf.constant(body["instances"], tf.string)})
        rows = [
            {k: (v[i].decode() if isinstance(v[i], bytes) else v[i].tolist()) for k, v in
             ((k, t.numpy()) for k, t in outputs.items())}
            for i in range(len(body["instances"]))
        ]
        self.answer({"predictions": rows})


http.server.ThreadingHTTPServer(("127.0.0.1", int(flags["rest_api_port"])), Handler).serve_forever()
"""


def test_load_rows_count_requests_errors_and_lines_that_differ_from_alone():
    expected = [line.upper() for line in POOL]

    def client(lines):  # "c" answers differently when it is not alone; "b" alone fails
        if lines == ["b"]:
            raise RuntimeError("refused\nsecond line")
        return [line.upper() if line != "c" or len(lines) == 1 else "?" for line in lines]

    alone = bench_serving.drive(client, POOL, expected, clients=2, lines_per_request=1, seconds=0.3)
    assert alone["requests"] > 0 and alone["errors"] > 0 and alone["first_error"] == "RuntimeError: refused"
    assert alone["lines_differing"] == 0 and alone["lines"] == alone["requests"]
    assert alone["p50_ms"] <= alone["p95_ms"] <= alone["p99_ms"]
    pairs = bench_serving.drive(client, POOL, expected, clients=3, lines_per_request=2, seconds=0.3)
    assert pairs["errors"] == 0 and pairs["lines"] == 2 * pairs["requests"]
    # every request of 2 consecutive lines (of 4) holds "c" in one of two requests
    assert pairs["lines_differing"] == pytest.approx(pairs["requests"] / 2, abs=3)


def test_memory_slope_is_the_least_squares_slope_after_the_warm_up():
    seconds = np.arange(0, 601, 5.0)
    mb = 900 + 2.0 * seconds / 60 + np.random.default_rng(0).normal(0, 0.5, seconds.size)
    mb[:6] += 300  # the warm-up's first 30 s (within its first 10%) are left out
    summary = bench_serving.memory_summary(list(zip(seconds, mb)))
    kept = seconds >= 60
    reference = np.polyfit(seconds[kept] / 60, mb[kept], 1)[0]
    assert summary["rss_slope_mb_per_min"] == pytest.approx(reference, abs=1e-3)
    assert summary["rss_slope_mb_per_min"] == pytest.approx(2.0, abs=0.1)
    assert summary["rss_first_mb"] == pytest.approx(mb[0], abs=0.1) and summary["rss_samples"] == seconds.size


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tiny translation export (model folder with version 1), as tfkd writes it."""
    import keras_hub

    from tfkd.exporters.text_saved_model import write_text_saved_model
    from tfkd.tasks.translation import TranslationDecode
    from tfkd.tasks.translation.inference import Translator

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d"]
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocabulary, oov_token="[UNK]")
    student = tiny_transformer(9, 9, seed=3, max_length=16)
    decode = TranslationDecode(algorithm="beam", beam_size=2, max_length_a=0.0, max_length_b=6, batch_size=8)
    translator = Translator(student, tokenizer, tokenizer, decode, max_tokens=16)
    model_dir = tmp_path_factory.mktemp("models") / "tiny"
    write_text_saved_model(
        str(model_dir / "1"),
        {"serving_default": translator._translate},
        {"task": "translation", "input": "source", "output": "translations", "batch_size": 8},
        tokenizers=(tokenizer, tokenizer),
    )
    return model_dir


def test_server_rows_through_a_model_server_on_path_without_and_with_batching(export, tmp_path):
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(["a b c", "d", "b b a", "c a", "", "d d d d"]) + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "stand_in.py").write_text(STAND_IN_SERVER)
    server = bin_dir / "tensorflow_model_server"
    server.write_text(f'#!/bin/sh\nexec {sys.executable} {tmp_path / "stand_in.py"} "$@"\n')
    server.chmod(server.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", STAND_IN_LOG=str(tmp_path / "argv.log"))
    out = subprocess.run(
        [
            sys.executable,
            TOOL,
            str(export),
            "-i",
            str(pool),
            "--clients",
            "1,3",
            "--lines",
            "1,4",
            "--seconds",
            "1",
            "--server",
            "--json",
            str(tmp_path / "result.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert [row["clients"] for row in result["load"]] == [1, 1, 3, 3]
    for label in ("server", "server, batching"):
        rows = result["server"][label]
        assert [(r["clients"], r["lines_per_request"]) for r in rows] == [(1, 1), (1, 4), (3, 1), (3, 4)]
        for row in rows:  # answered over REST as in process, the server's memory sampled
            assert row["requests"] > 0 and row["errors"] == 0 and row["lines_differing"] == 0, row
            assert row["rss_peak_mb"] > 100
    started = [json.loads(line) for line in (tmp_path / "argv.log").read_text().splitlines()]
    assert len(started) == 2 and "--enable_batching" not in started[0]
    batching = [a for a in started[1] if a.startswith("--batching_parameters_file=")]
    assert "--enable_batching" in started[1] and batching
    text = open(batching[0].split("=", 1)[1]).read()
    assert "max_batch_size { value: 8 }" in text  # the export's batch_size
    assert "### server, batching" in out.stdout


def test_without_a_model_server_on_path_the_server_rows_say_so(export, tmp_path):
    pool = tmp_path / "pool.txt"
    pool.write_text("a b\nc\n")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + ":/usr/bin:/bin")
    out = subprocess.run(
        [sys.executable, TOOL, str(export / "1"), "-i", str(pool), "--no-load", "--server"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "tensorflow_model_server is not on PATH" in out.stdout
