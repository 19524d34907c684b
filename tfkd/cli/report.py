"""``tfkd report RUN [-o DIR] [--against STUDENT]``: a run's report, one HTML page and its
figures (:func:`tfkd.report.build_report`); ``tfkd report RUN RUN [RUN ...] -o DIR [--by KEY]``: the
runs side by side along the one setting they differ in, a learning curve
(:func:`tfkd.report.across_runs.build_curve_report`)."""

from tfkd.cli.errors import reports_errors
from tfkd.cli.startup import import_tensorflow


def register(add):
    report = add(
        "report",
        "write a run's report: one HTML page with its figures",
        "Write the report of a run directory: the stages' state (and what an unfinished run lacks), "
        "the comparison table, training curves, the teacher's stages, size and batch-1 latency "
        "against quality, and the task's own sections (BLEU by source length, confusion "
        "matrices, ...). One HTML page and the PNG files it shows, in one folder. Given several "
        "runs that differ in one setting (data.train_limit, say), one page across them: each "
        "student's test metric and its gain over the baseline against that setting.",
    )
    report.add_argument("run_dir", metavar="RUN", nargs="+", help="a run directory (runs/<name>), or several")
    report.add_argument(
        "-o", "--output", metavar="DIR", help="the report's folder (default: RUN/report; required for several runs)"
    )
    report.add_argument(
        "--by",
        metavar="KEY",
        help="several runs: the spec key to place them along (default: the one setting they differ in)",
    )
    report.add_argument(
        "--against",
        metavar="STUDENT",
        help="one run: also test every student against this one (student, a variant's name, baseline), "
        "beside the baseline: LightPAFF against the pre-trained student without KD, say",
    )
    report.add_argument(
        "--no-latency",
        dest="latency",
        action="store_false",
        help="do not load the students to time their predictions at batch 1",
    )
    report.set_defaults(func=cmd_report)


@reports_errors(interrupted="interrupted; the report was not written")
def cmd_report(args):
    import os

    from tfkd.errors import StageError

    for run_dir in args.run_dir:
        if not os.path.isdir(run_dir):
            raise StageError(f"{run_dir}: no such run directory")
    if len(args.run_dir) > 1 and not args.output:
        raise StageError(f"{len(args.run_dir)} runs: give the folder of the report across them with -o DIR")
    if len(args.run_dir) == 1 and args.by:
        raise StageError("--by places several runs along a setting: give two runs or more")
    if len(args.run_dir) > 1 and args.against:
        raise StageError("--against adds a column to one run's comparison: give one run")
    # reading TensorBoard events imports TensorFlow: with its start-up lines kept off the terminal
    import_tensorflow()
    if len(args.run_dir) > 1:
        from tfkd.report.across_runs import build_curve_report

        print(build_curve_report(args.run_dir, args.output, by=args.by))
        return 0
    from tfkd.report import build_report

    print(build_report(args.run_dir[0], args.output, latency=args.latency, against=args.against))
    return 0
