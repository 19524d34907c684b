"""``tfkd average RUN_DIR``: the element-wise average of the last checkpoints a train stage
kept, into a weights file that ``translate --weights`` and ``export --weights`` read."""

import os

from tfkd.cli.arguments import positive_int
from tfkd.cli.errors import reports_errors
from tfkd.cli.runs import open_finished_run
from tfkd.cli.startup import import_tensorflow


def register(add):
    average = add(
        "average",
        "average the last checkpoints a train stage kept (train.keep_last) into a weights file",
        "Average the student weights of the last N checkpoints a train stage kept (train.keep_last: N) "
        "element-wise, as fairseq's average_checkpoints.py does, into a weights file that tfkd "
        "translate --weights and tfkd export --weights read. The stage itself is left as it is.",
    )
    average.add_argument("run_dir")
    average.add_argument("--stage", default="train", help="the train stage (default: train; baseline, a variant)")
    average.add_argument(
        "--last", type=positive_int, metavar="N", help="how many of the last checkpoints (default: all kept)"
    )
    average.add_argument(
        "-o", "--output", metavar="FILE", help="default: RUN_DIR/STAGE/checkpoints/average-last-N.weights.h5"
    )
    average.set_defaults(func=cmd_average)


def check_weights_path(path):
    """A :class:`~tfkd.errors.DataError` unless ``-o`` names a Keras weights file that can be
    written (its folder exists; the name ends in ``.weights.h5``, as Keras requires), before
    any work; ``None`` (the default file) passes."""
    from tfkd.cli.translate import check_output_path
    from tfkd.errors import DataError

    if not path:
        return
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise DataError(f"-o {path}: is a directory; give a file name ending in .weights.h5")
    check_output_path(path)
    if not path.endswith(".weights.h5"):
        stem = os.path.basename(path).split(".")[0] or "average"
        raise DataError(f"-o {path}: Keras weights files end in .weights.h5; give, say, {stem}.weights.h5")


@reports_errors
def cmd_average(args):
    check_weights_path(args.output)
    import_tensorflow()
    from tfkd.run_lock import hold_if_inside
    from tfkd.training.averaging import CHECKPOINTS_DIR

    _, runner, context = open_finished_run(args.run_dir, args.stage)
    out = args.output or os.path.join(runner.stage_dir(args.stage), CHECKPOINTS_DIR, "average.weights.h5")
    with hold_if_inside(args.run_dir, out):  # one writer per run directory
        return _average(args, runner, context)


def _average(args, runner, context):
    from tfkd.errors import StageError
    from tfkd.stages import load_student
    from tfkd.training.averaging import CHECKPOINTS_DIR, average_weights, kept_checkpoints, save_weights_atomic

    kept = kept_checkpoints(os.path.join(runner.stage_dir(args.stage), CHECKPOINTS_DIR))
    if not kept:
        raise StageError(
            f"{args.run_dir}: the {args.stage} stage kept no checkpoints (train it with train.keep_last: N)"
        )
    last = args.last or len(kept)
    if last > len(kept):
        raise StageError(
            f"--last {last}: the {args.stage} stage kept {len(kept)} checkpoints (steps "
            f"{', '.join(str(step) for step, _ in kept)})"
        )
    chosen = kept[-last:]
    out = args.output or os.path.join(runner.stage_dir(args.stage), CHECKPOINTS_DIR, f"average-last-{last}.weights.h5")
    student = average_weights(load_student(context, args.stage), [path for _, path in chosen])
    save_weights_atomic(student, out)  # -o's folder exists (check_weights_path); the default's, the stage's
    print(
        f"averaged steps {', '.join(str(step) for step, _ in chosen)} of {args.stage} into {out} "
        f"(use it with --weights)"
    )
    return 0
