"""Stages assembled from the task and the method; a user's own task and method, registered
from a module under ``imports:``, run end to end; generic code names no task or method."""

import ast
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from helpers import REPO, tfkd, weights_file_arrays

TOY_SPEC = """\
version: 1
name: toy
run_dir: {run_dir}
imports: [toy_plugins]
task: toy_reverse
data: {{file: {data}/train.txt, valid_file: {data}/valid.txt, batch_size: 16}}
distill: {{method: toy_prior}}
student: {{kind: toy_tagger, hidden_dim: 16}}
train: {{steps: 30, checkpoint_every: 20, log_every: 10, learning_rate: 2.0, warmup_steps: 10, label_smoothing: 0.0}}
evaluate: {{splits: [valid]}}
"""


def write_toy(tmp_path):
    import random

    rng = random.Random(0)
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 300), ("valid", 40)):
        lines = [" ".join(str(rng.randrange(10)) for _ in range(rng.randint(2, 6))) for _ in range(n)]
        (data / f"{split}.txt").write_text("\n".join(lines) + "\n")
    shutil.copy(os.path.join(REPO, "tests", "toy_plugins.py"), tmp_path / "toy_plugins.py")
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_SPEC.format(run_dir=tmp_path / "runs", data=data))
    return str(path)


@pytest.mark.slow
def test_a_user_task_and_method_from_imports_run_end_to_end(tmp_path):
    spec = write_toy(tmp_path)
    stages = "vocab,toy_prior_fit,baseline,baseline_evaluate,train,evaluate,export"
    out = tfkd("run", spec, "--stages", stages)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "toy"
    # the method's own stage ran, in its place, and wrote what its trainer read
    order = [line.split("stage ")[1].split(":")[0] for line in out.stderr.splitlines() if ": running into" in line]
    assert order == stages.split(",")
    prior = json.load(open(run / "toy_prior_fit" / "stage.json"))["results"]["prior"]
    assert prior[0] == 0 and abs(sum(prior) - 1) < 1e-3
    # the method's loss term is trained and reported with its own weight; the baseline has none
    train = json.load(open(run / "train" / "stage.json"))["results"]
    baseline = json.load(open(run / "baseline" / "stage.json"))["results"]
    assert train["loss_weights"] == {"xe": 1.0, "prior": 0.1} and train["steps"] == 30
    assert baseline["loss_weights"] == {"xe": 1.0}

    def step_lines(stage):
        section = out.stderr.split(f"stage {stage}: running")[1].split(f"stage {stage}: done")[0]
        return [line for line in section.splitlines() if " tfkd I step " in line]

    assert step_lines("train") and all("prior " in line for line in step_lines("train"))
    assert step_lines("baseline") and not any("prior" in line for line in step_lines("baseline"))
    # the task's metric, for both students, in the summary and the table
    assert "toy: student valid accuracy" in out.stdout and "toy: baseline valid accuracy" in out.stdout
    assert "| toy_prior (xe=1 prior=0.1)" in out.stdout
    assert json.load(open(run / "evaluate" / "scores.json"))["valid"]["score"] > 10  # chance is 10%
    # the task's export and predictor
    assert (run / "export" / "toy" / "1" / "saved_model.pb").exists()
    (tmp_path / "in.txt").write_text("1 2 3\n4 5\n")
    predicted = tfkd("translate", str(run), "-i", str(tmp_path / "in.txt"))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert [len(line.split()) for line in predicted.stdout.splitlines()] == [3, 2]
    # the method's settings key its stage: changing them reruns it and what follows, not the vocab
    again = tfkd("run", spec, "--stages", "vocab,toy_prior_fit", "--set", "distill.smoothing=2.0")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "stage vocab: already done" in again.stderr and "stage toy_prior_fit: running" in again.stderr


@pytest.mark.slow
def test_seeds_train_every_student_per_seed_beside_a_finished_run_and_the_table_gives_mean_and_std(tmp_path):
    spec = write_toy(tmp_path)
    stages = "vocab,toy_prior_fit,baseline,baseline_evaluate,train,evaluate"
    assert tfkd("run", spec, "--stages", stages, "--set", "train.steps=10").returncode == 0
    out = tfkd("run", spec, "--stages", stages, "--set", "train.steps=10", "--seeds", "1,2,3")
    assert out.returncode == 0, out.stderr[-3000:]
    ran = [line.split("stage ")[1].split(":")[0] for line in out.stderr.splitlines() if ": running into" in line]
    # the first seed's stages and the method's own stage are the finished run's; each student
    # trains and is scored once more per other seed
    assert ran == ["baseline-s2", "baseline_evaluate-s2", "baseline-s3", "baseline_evaluate-s3"] + [
        "train-s2",
        "evaluate-s2",
        "train-s3",
        "evaluate-s3",
    ]
    run = tmp_path / "runs" / "toy"
    scores = [
        json.load(open(run / s / "scores.json"))["valid"]["score"] for s in ("evaluate", "evaluate-s2", "evaluate-s3")
    ]
    assert len(set(scores)) > 1  # each seed its own student
    mean = sum(scores) / 3
    std = (sum((x - mean) ** 2 for x in scores) / 2) ** 0.5
    row = next(line for line in out.stdout.splitlines() if line.startswith("| toy_prior"))
    assert f"{mean:.2f} ± {std:.2f}" in row and "| 1, 2, 3 " in row
    assert "toy: student seed 3 valid accuracy" in out.stdout


def test_stage_names_come_from_the_task_and_the_method(tmp_path):
    from tfkd.pipeline import requested_stages
    from tfkd.plan import plan_run
    from tfkd.spec import load_spec

    spec = load_spec(write_toy(tmp_path))
    assert plan_run(spec).names == [
        "vocab",
        "toy_prior_fit",
        "baseline",
        "baseline_evaluate",
        "train",
        "evaluate",
        "export",
    ]
    # any order on the command line runs in dependency order
    assert requested_stages(spec, ["evaluate", "train", "vocab"]) == ["vocab", "train", "evaluate"]
    assert requested_stages(spec) == ["vocab", "toy_prior_fit", "train", "evaluate"]
    plain = load_spec(os.path.join(REPO, "specs", "baseline_multi30k.yaml"))
    assert plan_run(plain).names == ["vocab", "train", "evaluate", "export"]


# ----------------------------------------------------------------------------- package layout

PACKAGE = pathlib.Path(REPO) / "tfkd"
GENERIC = [
    "spec",
    "cli",
    "registry.py",
    "runner.py",
    "pipeline.py",
    "plan.py",
    "context.py",
    "stages.py",
    "data.py",
    "exporters",
    "lazy.py",
    "distribute.py",
    "decoding",
    "builtins.py",
    "testing.py",
    "layers",
    "models",
    "training",
    "comparison.py",
    "report",
    "serving.py",
    "errors.py",
    "distillation",
]


def imports_of(path):
    """Absolute ``tfkd...`` modules a file imports (at any depth of its code)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)

    # a value a setting takes (Literal["adapters", "all"] and its default) or a setting's name
    # (field_validator("adapters")) is not a method's name
    def literal(node):
        return isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal"

    settings = set()
    for n in ast.walk(tree):
        if literal(n):
            settings.update(id(c) for c in ast.walk(n.slice))
        elif isinstance(n, ast.AnnAssign) and literal(n.annotation) and n.value is not None:
            settings.add(id(n.value))
        elif isinstance(n, ast.Call) and getattr(n.func, "id", None) == "field_validator":
            settings.update(id(a) for a in n.args)
    strings = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in settings
    }
    return {m for m in found if m.startswith("tfkd")}, strings


def test_generic_modules_never_name_a_method_or_a_task():
    methods = [p.stem for p in (PACKAGE / "methods").iterdir() if p.stem not in ("__init__", "base", "__pycache__")]
    tasks = [p.stem for p in (PACKAGE / "tasks").iterdir() if p.stem not in ("__init__", "base", "__pycache__")]
    assert "soft_target" in methods and "translation" in tasks
    files = [f for g in GENERIC for f in ([PACKAGE / g] if g.endswith(".py") else (PACKAGE / g).rglob("*.py"))]
    for path in files:
        modules, strings = imports_of(path)
        for module in modules:
            parts = module.split(".")
            assert not (len(parts) > 2 and parts[1] in ("methods", "tasks") and parts[2] not in ("base",)), (
                f"{path.relative_to(REPO)} imports {module}"
            )
        named = [n for n in methods + tasks if n in strings]
        assert not named, f"{path.relative_to(REPO)} names {named}"


def import_graph(root=PACKAGE):
    """``{module: modules it imports}`` over the ``tfkd`` modules under ``root``: every import,
    also those inside functions (a late import still ties the two modules) and those of a
    submodule from its own package."""
    trees = {}
    for path in root.rglob("*.py"):
        relative = path.relative_to(root.parent).with_suffix("")
        trees[".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)] = ast.parse(
            path.read_text()
        )
    graph = {}
    for name, tree in trees.items():
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tfkd"):
                # ``from P import m`` imports the module P.m when there is one, else a name of P
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    edges.add(submodule if submodule in trees else node.module)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("tfkd"))
        graph[name] = {e for e in edges if e in trees and e != name}
    return graph


def import_cycle(graph):
    """One circle of ``graph`` as a list of modules (first and last the same), or ``[]``."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack + [nxt])
                if found:
                    return found
        state[node] = "done"
        return []

    for name in sorted(graph):
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return []


def test_tfkd_has_no_import_cycles():
    assert not import_cycle(import_graph()), " -> ".join(import_cycle(import_graph()))


def test_the_cycle_check_sees_a_submodule_importing_its_package_inside_a_function(tmp_path):
    package = tmp_path / "tfkd" / "methods" / "mine"
    package.mkdir(parents=True)
    (tmp_path / "tfkd" / "__init__.py").write_text("")
    (tmp_path / "tfkd" / "methods" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("from tfkd.methods.mine.parts import helper\n")
    (package / "parts.py").write_text("def helper():\n    from tfkd.methods.mine import Method\n")
    assert import_cycle(import_graph(tmp_path / "tfkd")) == [
        "tfkd.methods.mine",
        "tfkd.methods.mine.parts",
        "tfkd.methods.mine",
    ]


def test_validate_imports_no_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys; from tfkd.spec import load_spec; load_spec('specs/quickstart.yaml'); "
        "load_spec('specs/iwslt_deen.yaml'); print(sorted(m for m in ('tensorflow', 'keras', 'keras_hub') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_variants_train_beside_the_main_student_and_join_the_table(tmp_path):
    spec = write_toy(tmp_path)
    with open(spec, "a") as f:
        f.write(
            "variants:\n  strong_prior: {distill.loss_weights: {xe: 1.0, prior: 1.0}}\n  short: {train.steps: 10}\n"
        )
    out = tfkd("run", spec)  # declared variants run by default
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "toy"
    order = [line.split("stage ")[1].split(":")[0] for line in out.stderr.splitlines() if ": running into" in line]
    assert order == [
        "vocab",
        "toy_prior_fit",
        "strong_prior",
        "strong_prior_evaluate",
        "short",
        "short_evaluate",
        "train",
        "evaluate",
    ]
    results = {
        name: json.load(open(run / name / "stage.json"))["results"] for name in ("strong_prior", "short", "train")
    }
    assert results["strong_prior"]["loss_weights"] == {"xe": 1.0, "prior": 1.0}
    assert results["short"]["steps"] == 10 and results["train"]["steps"] == 30
    assert results["train"]["loss_weights"] == {"xe": 1.0, "prior": 0.1}
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "student" not in line]
    assert [r.split("|")[1].strip() for r in rows] == [
        "strong_prior: toy_prior (xe=1 prior=1)",
        "short: toy_prior (xe=1 prior=0.1)",
        "toy_prior (xe=1 prior=0.1)",
    ]
    assert "toy: strong_prior valid accuracy" in out.stdout
    # a variant's settings key its own stage only
    again = tfkd("run", spec, "--set", "variants.short={train.steps: 12}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "stage short: running" in again.stderr and "stage strong_prior: already done" in again.stderr
    assert "stage train: already done" in again.stderr


@pytest.mark.slow
def test_a_diverged_train_stage_stops_in_one_line_and_resumes_with_a_lower_learning_rate(tmp_path):
    """The loss turns NaN at step 21 while the learning rate is high (the toy method's
    stand-in for divergence): training stops naming the step and the term, the step-20
    checkpoint stays, and the same command with a lower ``train.learning_rate`` goes on from it."""
    spec = write_toy(tmp_path)
    stages = [
        "--stages",
        "vocab,toy_prior_fit,train",
        "--set",
        "distill.diverge_from_step=20",
        "--set",
        "distill.diverge_above_learning_rate=0.05",
    ]
    out = tfkd("run", spec, *stages)
    assert out.returncode == 1, out.stderr[-3000:]
    partial = tmp_path / "runs" / "toy" / "train.partial"
    assert out.stderr.splitlines()[-1] == (
        "tfkd: error: train: the loss became nan at step 21 (prior nan); training stopped. The last good checkpoint "
        f"(step 20) is kept in {partial}/checkpoint. Lower train.learning_rate or set train.clip_norm and run the same "
        "command with --set train.learning_rate=... (or train.clip_norm=...): the stage goes on from that checkpoint."
    )
    assert json.load(open(partial / "checkpoint" / "state.json"))["step"] == 20
    # a change the stage cannot go on with (another student) starts it over: it diverges again
    smaller = [*stages, "--set", "student.hidden_dim=8"]
    again = tfkd("run", spec, *smaller)
    assert (
        again.returncode == 1
        and "stage train: discarding partial work of other inputs (student.hidden_dim 16 -> 8)" in again.stderr
    )
    assert "at step 21 (prior nan)" in again.stderr.splitlines()[-1]
    lower = tfkd("run", spec, *smaller, "--set", "train.learning_rate=0.5")
    assert lower.returncode == 0, lower.stderr[-3000:]
    assert f"stage train: resuming partial work in {partial} with train.learning_rate changed" in lower.stderr
    assert "train: continuing from step 20 of 30" in lower.stderr
    results = json.load(open(tmp_path / "runs" / "toy" / "train" / "stage.json"))["results"]
    assert results["steps"] == 30 and results["loss"] == results["loss"]  # finite, not NaN


@pytest.mark.slow
def test_a_larger_train_steps_goes_on_from_the_finished_stage_and_equals_a_straight_run(tmp_path):
    """A finished train stage keeps its last checkpoint: raising ``train.steps`` continues from
    it (as fairseq and OpenNMT-tf continue a longer schedule), logs what changed, and ends bit
    for bit where a run straight to the larger number of steps ends (the data stream is skipped
    and the random streams restored); a smaller number than it reached starts over, as does a
    linear schedule (its learning rate at every step depends on train.steps)."""
    spec = write_toy(tmp_path)
    flags = ["--stages", "vocab,toy_prior_fit,train", "--set", "train.deterministic=true"]
    run = tmp_path / "runs" / "toy"
    first = tfkd("run", spec, *flags, "--set", "train.steps=20")
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.load(open(run / "train" / "checkpoint" / "state.json"))["step"] == 20
    longer = tfkd("run", spec, *flags, "--set", "train.steps=30")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert "stage vocab: already done" in longer.stderr
    assert "stage train: running again, its inputs changed: train.steps 20 -> 30" in longer.stderr
    assert "stage train: going on from its finished work (train.steps changed)" in longer.stderr
    assert "train: continuing from step 20 of 30" in longer.stderr
    assert json.load(open(run / "train" / "stage.json"))["results"]["steps"] == 30

    straight = tfkd("run", spec, *flags, "--set", "train.steps=30", "--set", "name=straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    ours = weights_file_arrays(run / "train" / "student.weights.h5")
    theirs = weights_file_arrays(tmp_path / "runs" / "straight" / "train" / "student.weights.h5")
    assert sorted(ours) == sorted(theirs) and ours
    for name, array in ours.items():
        np.testing.assert_array_equal(array, theirs[name], err_msg=name)

    shorter = tfkd("run", spec, *flags, "--set", "train.steps=10")
    assert shorter.returncode == 0, shorter.stderr[-3000:]
    assert "stage train: running again, its inputs changed: train.steps 30 -> 10" in shorter.stderr
    assert "going on from" not in shorter.stderr and "continuing from" not in shorter.stderr
    assert json.load(open(run / "train" / "stage.json"))["results"]["steps"] == 10

    linear = [*flags, "--set", "train.schedule=linear"]
    assert tfkd("run", spec, *linear, "--set", "train.steps=10").returncode == 0
    again = tfkd("run", spec, *linear, "--set", "train.steps=20")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "stage train: running again, its inputs changed: train.steps 10 -> 20" in again.stderr
    assert "continuing from" not in again.stderr
