"""Results kept as data, and the pages' tables made from them.

``keep`` copies what a finished run needs to be re-tested into ``results/<experiment>/``: the
spec as it ran (the data root written as ``${TFKD_DATA_DIR}``), the exact command, the
versions, every stage's marker (its results: scores, steps, seconds) and each evaluate stage's
outputs of the scored splits (hypotheses, predictions, per-block NLL), gzip-compressed. No
corpus, no checkpoint::

    python tools/results_data.py keep runs/quickstart quickstart \\
        --command "tfkd run specs/quickstart.yaml --seeds 1,2,3"

``pages`` rebuilds every experiment's run folder (without its models) in a temporary folder,
computes its comparison table with ``tfkd``'s own code (the table ``tfkd run`` prints: means
over seeds, each student against the baseline with the sentence-cluster and seed-level tests,
Holm-adjusted) and writes it between the markers a page holds::

    <!-- results: quickstart -->
    ...the generated table...
    <!-- /results -->

A benchmark kept by ``python tools/bench.py RUN --sections deploy --keep NAME`` (its report,
command and versions in ``results/bench/NAME.json``) fills ``<!-- bench: NAME TABLE -->`` ...
``<!-- /bench -->`` with one of its tables (``speed``, ``test_set``, ``anchor``, ``summary``).

``<!-- results: NAME against STUDENT -->`` adds a column of each other student tested against
``STUDENT`` (its train stage), for a spec whose comparisons are not with a baseline.

``keep-table EXPERIMENT NAME --command "..."`` runs a tool that prints a Markdown table about a
run (``tools/source_encoding_stats.py``, ``tools/hypothesis_stats.py``) and keeps what it
printed with the command and the versions; ``<!-- results table: EXPERIMENT/NAME -->`` ...
``<!-- /results -->`` shows it.

``pages --check`` writes nothing and exits 1 naming each page whose table differs from its data
(the suite runs it). The references are read from ``TFKD_DATA_DIR``.
"""

import argparse
import datetime
import glob
import gzip
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

RESULTS = os.path.join(REPO, "results")
PAGES = ("README.md", "docs/*.md")
DATA_ROOT = "${TFKD_DATA_DIR}"
# what an evaluate stage writes that a paired test reads, per split (a translation's
# hypotheses, a classifier's predictions, a language model's per-block NLL)
OUTPUTS = ("{split}.hyp", "{split}.pred", "{split}.blocks.npy")
# a stage's files that scoring those outputs needs: the classification task reads its label
# names with its tokenizers (a vocab stage's settings, labels and WordPiece vocabulary)
STAGE_FILES = ("labels.json", "tokenizers.json", "text.vocab")
PACKAGES = ("tensorflow", "keras", "keras-hub", "sacrebleu", "numpy", "scipy")
# an experiment's own table; "against STUDENT" adds each other student against that one (a spec
# without a baseline, such as AB-Net's against its Transformer)
BLOCK = re.compile(
    r"(?P<open><!-- results: (?P<name>[\w.-]+)(?: against (?P<against>\w+))? -->\n)"
    r"(?P<body>.*?)(?P<close><!-- /results -->)",
    re.S,
)
# a table of claims across experiments: "EXPERIMENT/STUDENT" or "EXPERIMENT/STUDENT vs REFERENCE"
# (train stages; the reference is the baseline unless named), comma-separated, one Holm family
SUMMARY = re.compile(r"(<!-- results summary: (?P<claims>[^\n]+?) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)
# a table of a benchmark kept by tools/bench.py --keep NAME (results/bench/NAME.json): "NAME TABLE"
BENCH = re.compile(r"(<!-- bench: (?P<name>[\w.-]+) (?P<table>\w+) -->\n)(?P<body>.*?)(<!-- /bench -->)", re.S)
# the Markdown table a tool printed, kept by ``keep-table`` (results/EXPERIMENT/tables/NAME.json)
TOOL_TABLE = re.compile(
    r"(?P<open><!-- results table: (?P<experiment>[\w.-]+)/(?P<name>[\w.-]+) -->\n)"
    r"(?P<body>.*?)(?P<close><!-- /results -->)",
    re.S,
)
CLAIM = re.compile(r"(?P<experiment>[\w.-]+)/(?P<student>\w+)(?: vs (?P<reference>\w+))?")


def versions():
    from importlib import metadata

    def installed(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), None)
    return {
        "tfkd_commit": commit or None,
        "python": platform.python_version(),
        **{name: installed(name) for name in PACKAGES},
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kept": datetime.date.today().isoformat(),
    }


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            return f.readlines()
    except OSError:
        return []


def keep(run_dir, name, command, results_dir=RESULTS, note=None):
    """Copy run ``run_dir``'s markers and scored outputs into ``results_dir/name``."""
    from tfkd.report.contents import read_run

    contents = read_run(run_dir)
    out = os.path.join(results_dir, name)
    if os.path.exists(out):
        raise SystemExit(f"{out} exists: give another experiment name or remove it first")
    os.makedirs(os.path.join(out, "stages"))
    with open(os.path.join(run_dir, "spec.yaml"), encoding="utf-8") as f:
        spec_text = f.read()
    data_root = os.environ.get("TFKD_DATA_DIR")
    if data_root:
        spec_text = spec_text.replace(os.path.abspath(data_root), DATA_ROOT)
    _write(os.path.join(out, "spec.yaml"), spec_text)
    _write(os.path.join(out, "command.txt"), command.strip() + "\n")
    # tfkd_commit is the checkout's when the run is kept; a run made (or resumed) under other
    # commits says which in its note
    kept_versions = versions() | ({"note": note} if note else {})
    _write(os.path.join(out, "versions.json"), json.dumps(kept_versions, indent=1) + "\n")
    splits = contents.spec.evaluate.splits
    for stage in contents.stages:
        if stage.state != "finished":
            continue
        folder = os.path.join(out, "stages", stage.name)
        os.makedirs(folder)
        shutil.copy(os.path.join(stage.directory, "stage.json"), folder)
        names = [pattern.format(split=split) for pattern in OUTPUTS for split in splits] + list(STAGE_FILES)
        for name in names:
            source = os.path.join(stage.directory, name)
            if os.path.exists(source):
                with open(source, "rb") as f, gzip.open(os.path.join(folder, name + ".gz"), "wb") as g:
                    shutil.copyfileobj(f, g)
    return out


def keep_bench(report, name, command, results_dir=RESULTS):
    """Write a ``tools/bench.py`` report with its command and versions to
    ``results_dir/bench/NAME.json``; its path."""
    path = os.path.join(results_dir, "bench", f"{name}.json")
    _refuse_existing(path)
    return _keep_json(path, command, report=report)


def _refuse_existing(path):
    if os.path.exists(path):
        raise SystemExit(f"{path} exists: give another name or remove it first")


def _keep_json(path, command, **kept):
    """Write ``kept`` with ``command`` and the versions as the JSON file ``path``; its path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write(path, json.dumps({"command": command, "versions": versions(), **kept}, indent=1) + "\n")
    return path


def keep_table(experiment, name, command, results_dir=RESULTS):
    """Run ``command`` (a shell command from the repository's folder: a tool that prints a
    Markdown table about a run, such as ``tools/source_encoding_stats.py``) and keep what it
    prints, with the command and the versions, as ``results_dir/EXPERIMENT/tables/NAME.json``;
    its path. The run's models are not kept, so the printed table is the data."""
    path = os.path.join(results_dir, experiment, "tables", f"{name}.json")
    _refuse_existing(path)
    done = subprocess.run(command, shell=True, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"keep-table: {command!r} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    table = "\n".join(line for line in done.stdout.splitlines() if line.startswith("|"))
    if not table:
        raise SystemExit(f"keep-table: {command!r} printed no Markdown table")
    return _keep_json(path, command, table=table)


def tool_table(results_dir, experiment, name):
    """A table kept by :func:`keep_table`, with the command that printed it."""
    path = os.path.join(results_dir, experiment, "tables", f"{name}.json")
    if not os.path.exists(path):
        raise SystemExit(f"a results table block names {experiment}/{name}, which is not in {results_dir}")
    with open(path, encoding="utf-8") as f:
        kept = json.load(f)
    where = os.path.relpath(path, os.path.dirname(results_dir))
    return kept["table"] + f"\n\n`{kept['command']}` (kept in `{where}`)\n"


def bench_table(results_dir, name, table):
    """Table ``table`` of the benchmark kept as ``results_dir/bench/NAME.json`` (the deploy
    section's: ``speed``, ``test_set``, ``anchor``)."""
    from bench_deploy import deploy_tables

    path = os.path.join(results_dir, "bench", f"{name}.json")
    if not os.path.exists(path):
        raise SystemExit(f"a bench block names {name!r}, which is not in {os.path.dirname(path)}")
    with open(path, encoding="utf-8") as f:
        tables = deploy_tables(json.load(f))
    if table not in tables:
        raise SystemExit(f"a bench block names table {table!r} of {name!r}: expected one of {', '.join(tables)}")
    return tables[table]


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def rebuild_run(experiment, where):
    """A run folder of ``experiment`` (a ``results/<name>`` folder) in ``where``: its spec,
    markers and outputs, as the comparison reads them; the run folder's path."""
    run = os.path.join(where, "runs", os.path.basename(experiment.rstrip("/")))
    os.makedirs(run)
    with open(os.path.join(experiment, "spec.yaml"), encoding="utf-8") as f:
        spec_text = f.read()
    data_root = os.environ.get("TFKD_DATA_DIR") or os.path.join(REPO, "..", "shared", "data")
    _write(os.path.join(run, "spec.yaml"), spec_text.replace(DATA_ROOT, os.path.abspath(data_root)))
    for stage in sorted(os.listdir(os.path.join(experiment, "stages"))):
        source, target = os.path.join(experiment, "stages", stage), os.path.join(run, stage)
        os.makedirs(target)
        for file_name in os.listdir(source):
            if file_name.endswith(".gz"):
                with (
                    gzip.open(os.path.join(source, file_name), "rb") as f,
                    open(os.path.join(target, file_name[:-3]), "wb") as g,
                ):
                    shutil.copyfileobj(f, g)
            else:
                shutil.copy(os.path.join(source, file_name), target)
    return run


def experiment_table(experiment, against=None):
    """The Markdown comparison table of a kept experiment, by tfkd's own comparison code (with
    ``against``, a student's train stage, each other student tested against it too)."""
    from tfkd.comparison import comparison_rows, render_table
    from tfkd.report.contents import read_run

    with tempfile.TemporaryDirectory() as where:
        run = rebuild_run(experiment, where)
        contents = read_run(run)
        table = comparison_rows(contents.spec, contents.results, run, against=against)
    if table is None:
        raise SystemExit(f"{experiment}: fewer than two evaluated students; nothing to compare")
    header, rows = table
    # what a reader needs beside the numbers, from the data too
    command = open(os.path.join(experiment, "command.txt"), encoding="utf-8").read().strip()
    return render_table(header, rows) + f"\n\n`{command}` (kept in `results/{os.path.basename(experiment)}/`)\n"


def experiment_tests(experiment, reference):
    """``(spec, results, split, {train stage: {metric: test}})``: every student of a kept
    experiment against its ``reference`` student, as the experiment's own table tests them."""
    from tfkd.comparison import paired_differences
    from tfkd.report.contents import read_run

    with tempfile.TemporaryDirectory() as where:
        run = rebuild_run(experiment, where)
        contents = read_run(run)
        split, tests = paired_differences(contents.spec, contents.results, run, reference=reference)
    return contents.spec, contents.results, split, tests


def summary_table(results_dir, claims):
    """The Markdown table of ``claims`` (a summary block's list, :data:`SUMMARY`): one row a
    claim, each student against its reference on the first metric its task tests, by the
    experiment's own tests; the p-values Holm-adjusted over the table's rows (one family)."""
    from tfkd.comparison import render_table, student_label
    from tfkd.plan import BASELINE
    from tfkd.significance import with_holm

    rows, tested = [], {}
    for claim in (c.strip() for c in claims.split(",")):
        match = CLAIM.fullmatch(claim)
        if not match:
            raise SystemExit(f"results summary: {claim!r} is not EXPERIMENT/STUDENT [vs REFERENCE]")
        experiment, student, reference = match["experiment"], match["student"], match["reference"] or BASELINE
        if not os.path.isdir(os.path.join(results_dir, experiment)):
            raise SystemExit(f"results summary: {experiment!r} is not in {results_dir}")
        if (experiment, reference) not in tested:
            tested[experiment, reference] = experiment_tests(os.path.join(results_dir, experiment), reference)
        spec, results, split, tests = tested[experiment, reference]
        if student not in tests:
            raise SystemExit(f"results summary: {experiment} has no tested student {student!r} against {reference!r}")
        metric, test = next(iter(tests[student].items()))
        rows.append(
            (experiment, student_label(spec, results, student), student_label(spec, results, reference), split, test)
        )
    header = [
        "experiment",
        "student",
        "against",
        "metric (split)",
        "scores (mean over seeds)",
        "per-seed differences",
        "difference [95% CI]",
        "p (Holm)",
        "seed p (Holm)",
        "established",
    ]

    def p(value):
        return "<0.001" if value < 0.0005 else f"{value:.3f}"

    cells = []
    for (experiment, student, reference, split, _), t in zip(rows, with_holm([r[-1] for r in rows])):
        seed_p = "cannot judge" if t["seed_p_value"] is None else f"{p(t['seed_p_value'])} ({p(t['seed_p_holm'])})"
        cells.append(
            [
                f"`{experiment}`",
                student,
                reference,
                f"{t['metric']} ({split})",
                f"{t['candidate']:.2f} against {t['baseline']:.2f}",
                " ".join(f"{d:+.2f}" for d in t["seed_differences"]),
                f"{t['difference']:+.2f} [{t['ci_low']:+.2f}, {t['ci_high']:+.2f}]",
                f"{p(t['p_value'])} ({p(t['p_holm'])})",
                seed_p,
                "yes" if t["established_holm"] else "no",
            ]
        )
    return render_table(header, cells) + "\n"


def render_pages(results_dir=RESULTS, pages=PAGES, root=REPO):
    """``{page path: (its text, the text with every results block regenerated)}`` of the pages
    that hold a results block."""
    tables, out = {}, {}
    for page in sorted({p for pattern in pages for p in glob.glob(os.path.join(root, pattern))}):
        with open(page, encoding="utf-8") as f:
            text = f.read()

        def fill(match, page=page):
            name = match.group("name")
            experiment = os.path.join(results_dir, name)
            if not os.path.isdir(experiment):
                raise SystemExit(f"{page}: a results block names {name!r}, which is not in {results_dir}")
            key = name, match.group("against")
            if key not in tables:
                tables[key] = experiment_table(experiment, against=key[1])
            return match.group("open") + tables[key] + match.group("close")

        def fill_summary(match):
            return match.group(1) + summary_table(results_dir, match["claims"]) + match.group(4)

        def fill_bench(match):
            return match.group(1) + bench_table(results_dir, match["name"], match["table"]) + match.group(5)

        def fill_tool_table(match):
            return match["open"] + tool_table(results_dir, match["experiment"], match["name"]) + match["close"]

        if any(pattern.search(text) for pattern in (BLOCK, SUMMARY, BENCH, TOOL_TABLE)):
            regenerated = BENCH.sub(fill_bench, SUMMARY.sub(fill_summary, BLOCK.sub(fill, text)))
            out[page] = (text, TOOL_TABLE.sub(fill_tool_table, regenerated))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="action", required=True)
    keeping = commands.add_parser("keep", help="keep a finished run's results in results/NAME")
    keeping.add_argument("run_dir")
    keeping.add_argument("name")
    keeping.add_argument("--command", required=True, help="the exact command that made the run")
    keeping.add_argument("--note", help="kept in versions.json: how the run was made, when not by one command at HEAD")
    tabling = commands.add_parser("keep-table", help="run a tool that prints a table and keep it in results/EXP/tables")
    tabling.add_argument("experiment")
    tabling.add_argument("name")
    tabling.add_argument("--command", required=True, help="the shell command that prints the table")
    paging = commands.add_parser("pages", help="regenerate the results tables of README.md and docs/")
    paging.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page differs from its data")
    args = parser.parse_args(argv)
    if args.action == "keep":
        print(keep(args.run_dir, args.name, args.command, results_dir=RESULTS, note=args.note))
        return 0
    if args.action == "keep-table":
        print(keep_table(args.experiment, args.name, args.command, results_dir=RESULTS))
        return 0
    stale = []
    for page, (text, regenerated) in render_pages().items():
        if text != regenerated:
            stale.append(os.path.relpath(page, REPO))
            if not args.check:
                _write(page, regenerated)
    if args.check and stale:
        print(f"tables differ from results/: {', '.join(stale)} (python tools/results_data.py pages)", file=sys.stderr)
        return 1
    print(("regenerated: " + ", ".join(stale)) if stale else "every results table matches results/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
