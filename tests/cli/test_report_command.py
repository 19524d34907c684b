"""``tfkd report RUN [-o DIR] [--no-latency] [--against STUDENT]`` in a fresh process, as a user's shell runs it:
the page's path on stdout, a mistake in one line, no TensorFlow start-up noise."""

import os
import subprocess
import sys

from helpers import REPO
from report_runs import check_page, synthetic_run

from tfkd.comparison import difference_header

NOISE = ("cuda", "oneDNN custom operations", "absl::InitializeLog", "cpu_feature_guard")


def run_tfkd(*args):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # a user's environment
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")])))
    return subprocess.run(
        [sys.executable, "-m", "tfkd.cli", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600
    )


def test_no_such_run_is_one_line(tmp_path):
    out = run_tfkd("report", str(tmp_path / "runs" / "quickstrat"))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == f"tfkd: error: {tmp_path / 'runs' / 'quickstrat'}: no such run directory\n"
    (tmp_path / "empty").mkdir()
    out = run_tfkd("report", str(tmp_path / "empty"))
    assert out.returncode == 1 and out.stderr.splitlines()[-1].endswith("not a tfkd run directory (no spec.yaml)")


def test_writes_the_page_into_the_run_or_where_told(tmp_path):
    run = synthetic_run(tmp_path)
    out = run_tfkd("report", str(run), "--no-latency")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout == f"{run / 'report' / 'index.html'}\n"
    assert not any(noise in out.stderr for noise in NOISE), out.stderr
    check_page(out.stdout.strip())
    elsewhere = tmp_path / "paper" / "figures"
    out = run_tfkd("-q", "report", str(run), "-o", str(elsewhere), "--no-latency")
    assert out.returncode == 0 and out.stdout == f"{elsewhere / 'index.html'}\n" and out.stderr == ""
    text, _ = check_page(str(elsewhere / "index.html"))
    assert "Latency not measured (--no-latency)." in text
    out = run_tfkd("report", str(run), "--no-latency", "--against", "student")
    assert out.returncode == 0, out.stderr[-3000:]
    assert difference_header("student", "test") in check_page(out.stdout.strip())[0]
    out = run_tfkd("report", str(run), "--no-latency", "--against", "techer")
    assert out.returncode == 1 and out.stdout == ""
    assert (
        out.stderr == "tfkd: error: 'techer' is not a student of run 'handmade'; its students are baseline, student\n"
    )


def test_help_names_the_command():
    out = run_tfkd("--help")
    assert out.returncode == 0 and "report" in out.stdout
    out = run_tfkd("report", "--help")
    assert "--no-latency" in out.stdout and "-o DIR" in out.stdout


def test_several_runs_make_one_page_across_them_and_mistakes_are_one_line(tmp_path):
    runs = []
    for name, limit in (("small", 2000), ("large", 5000)):
        run = synthetic_run(tmp_path, name=name)
        spec = (run / "spec.yaml").read_text().replace("  tgt_lang: en\n", f"  tgt_lang: en\n  train_limit: {limit}\n")
        (run / "spec.yaml").write_text(spec)
        runs.append(str(run))
    out = run_tfkd("report", *runs)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == "tfkd: error: 2 runs: give the folder of the report across them with -o DIR\n"
    out = run_tfkd("report", *runs, "-o", str(tmp_path / "curve"), "--by", "train.steps")
    assert out.returncode == 1 and out.stderr.splitlines() == [
        "tfkd: error: --by train.steps: two runs have the same value (40, 40)"
    ]
    out = run_tfkd("report", *runs, "-o", str(tmp_path / "curve"), "--against", "student")
    assert (
        out.returncode == 1
        and out.stderr == "tfkd: error: --against adds a column to one run's comparison: give one run\n"
    )
    out = run_tfkd("report", *runs, "-o", str(tmp_path / "curve"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout == f"{tmp_path / 'curve' / 'index.html'}\n"
    assert not any(noise in out.stderr for noise in NOISE), out.stderr
    text, images = check_page(out.stdout.strip())
    assert "2 runs placed along data.train_limit" in text and images == ["curve-data-train_limit.png"]
