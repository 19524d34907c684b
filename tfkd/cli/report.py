"""``tfkd report RUN [-o DIR]``: a run's report, one HTML page and its figures
(:func:`tfkd.report.build_report`)."""

from tfkd.cli.errors import reports_errors
from tfkd.cli.startup import import_tensorflow


def register(add):
    report = add(
        "report",
        "write a run's report: one HTML page with its figures",
        "Write the report of a run directory: the stages' state (and what an unfinished run lacks), "
        "the comparison table, training curves, the teacher's stages, size and batch-1 latency "
        "against quality, and the task's own sections (BLEU by source length, confusion "
        "matrices, ...). One HTML page and the PNG files it shows, in one folder.",
    )
    report.add_argument("run_dir", metavar="RUN", help="a run directory (runs/<name>)")
    report.add_argument("-o", "--output", metavar="DIR", help="the report's folder (default: RUN/report)")
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

    if not os.path.isdir(args.run_dir):
        raise StageError(f"{args.run_dir}: no such run directory")
    # reading TensorBoard events imports TensorFlow: with its start-up lines kept off the terminal
    import_tensorflow()
    from tfkd.report import build_report

    print(build_report(args.run_dir, args.output, latency=args.latency))
    return 0
