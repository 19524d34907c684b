"""What the commands that read a spec or a run directory share: a spec and its requested
stages, a run whose student finished, a ``--weights`` file."""

import os

from tfkd.cli.startup import load_spec


def spec_and_stages(args):
    """``(spec, stages)`` of ``SPEC [--set ...] [--stages ...]``; SpecError on a mistake."""
    from tfkd.pipeline import requested_stages

    spec = load_spec(args.spec, args.set)
    names = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    return spec, requested_stages(spec, names)


def open_finished_run(run_dir, stage):
    """``(spec, runner, context)`` of a run whose ``stage`` finished; reads no corpus."""
    from tfkd.comparison import compared_students
    from tfkd.errors import SpecError, StageError
    from tfkd.pipeline import open_run

    spec, runner, context = open_run(run_dir, stage)
    trained = [t for t, _ in compared_students(spec) if t in runner.stages]
    if stage not in runner.stages or (stage != "train" and stage not in trained):
        raise SpecError(f"--student {stage}: not a student of {run_dir}; choices: {', '.join(trained)}")
    if not runner.is_finished(stage):
        raise StageError(f"{run_dir}: the {stage} stage is not finished (run: tfkd run SPEC --stages {stage})")
    return spec, runner, context


def weights_file(path):
    """``--weights FILE``: the path, checked to exist (``None`` stays ``None``)."""
    if path is not None and not os.path.isfile(path):
        from tfkd.errors import StageError

        raise StageError(f"--weights {path}: no such file")
    return path
