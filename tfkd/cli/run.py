"""``tfkd run SPEC``: run a spec's stages (skipping those already done), then print the scores
and, with more than one student, the comparison table."""

import contextlib
import logging
import os
import sys

from tfkd.cli.arguments import STAGES_HELP, seed_list
from tfkd.cli.errors import reports_errors
from tfkd.cli.runs import spec_and_stages
from tfkd.cli.startup import import_tensorflow


def register(add):
    run = add("run", "run a spec's stages (skipping those already done)", epilog=STAGES_HELP)
    run.add_argument("spec", help="a YAML spec (see the README's spec reference)")
    run.add_argument(
        "--stages",
        help="comma-separated stages to run, in any order (default: the spec's stages, else its default plan)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a spec value, e.g. --set train.steps=100 (repeatable)",
    )
    run.add_argument(
        "--seeds",
        type=seed_list,
        help="train every student once per seed, e.g. --seeds 1,2,3 (train.seeds); the teacher's stages run once",
    )
    run.set_defaults(func=cmd_run)


@reports_errors(interrupted="interrupted; finished stages and the last checkpoint are kept")
def cmd_run(args):
    from tfkd.distribute import wants_multi_worker
    from tfkd.plan import plan_run

    if args.seeds:
        # the command line's seeds are the run's: the first is its train.seed
        args.set = [*args.set, f"train.seeds=[{','.join(map(str, args.seeds))}]", f"train.seed={args.seeds[0]}"]
    spec, stages = spec_and_stages(args)
    multi_worker = wants_multi_worker(getattr(getattr(spec, "train", None), "strategy", "auto"))
    if multi_worker:
        logging.getLogger("tfkd").info("multi-worker: joining the cluster of TF_CONFIG (waiting for every worker)")
    import_tensorflow(multi_worker)
    from tfkd.context import RunContext
    from tfkd.run_lock import hold_run_dir
    from tfkd.runner import Runner
    from tfkd.stopping import handling_stop_signals

    runner = Runner(spec, plan_run(spec))
    # one writer per run directory (a multi-worker run's chief); the report is written under it
    # too. SIGTERM and Ctrl-C stop a training stage after its step and checkpoint (one process)
    with (
        hold_run_dir(runner.run_dir) if runner.writes else contextlib.nullcontext(),
        contextlib.nullcontext() if multi_worker else handling_stop_signals(spec.train.preemption_grace_s),
    ):
        return _run(spec, stages, runner, RunContext(spec, runner))


def _run(spec, stages, runner, context):
    from tfkd.comparison import comparison_table, score_lines
    from tfkd.runner import LOG_FILE
    from tfkd.stopping import raise_if_requested

    # Keras' progress output goes to stderr with the logs: stdout keeps the results
    with contextlib.redirect_stdout(sys.stderr):
        results = runner.run(stages, context)
    table = comparison_table(spec, results, runner.run_dir)
    printed = "".join(line + "\n" for line in [*score_lines(spec, results), *([table] if table else [])])
    sys.stdout.write(printed)
    if printed and runner.writes and os.path.isdir(runner.run_dir):  # and the run's log keeps them
        with open(os.path.join(runner.run_dir, LOG_FILE), "a", encoding="utf-8") as f:
            f.write(printed)
    if spec.report.enabled and runner.writes and os.path.isdir(runner.run_dir):
        raise_if_requested()  # a signal while the last stage finished: no report, stop now
        write_report(runner.run_dir, spec.report.latency)
    return 0


def write_report(run_dir, latency):
    """The run's report (``report.enabled``); a report that cannot be made is one warning
    line, never the run's failure: the stages are done and kept."""
    log = logging.getLogger("tfkd")
    try:
        from tfkd.report import build_report

        path = build_report(run_dir, latency=latency)
    except Exception as e:  # the run's work is done: say what the report lacks
        log.warning("report: not written (%s: %s); tfkd report %s tries again", type(e).__name__, e, run_dir)
        return None
    return path
