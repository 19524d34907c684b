"""Opens a run: its plan (:func:`tfkd.plan.plan_run`), runner and context, from a spec or from a
finished run directory. Importing this module does not import TensorFlow."""

import json
import os

from tfkd.context import RunContext
from tfkd.errors import StageError
from tfkd.plan import plan_run
from tfkd.spec import load_spec


def requested_stages(spec, names=None):
    """``names`` (default: the spec's ``stages``, else the plan's defaults) in the order they run."""
    return plan_run(spec).requested(names, spec)


def open_run(run_dir, stage=None):
    """``(spec, runner, context)`` of a run directory, from the resolved spec it holds: the one
    ``stage`` was produced with, when it finished (a later ``tfkd run`` with other settings
    that did not finish leaves it as it was), else the run's."""
    from tfkd.runner import MARKER, SPEC_FILE, Runner

    spec_path = os.path.join(run_dir, SPEC_FILE)
    if not os.path.exists(run_dir):
        raise StageError(f"{run_dir}: no such file or directory")
    if os.path.exists(os.path.join(run_dir, MARKER)):  # a finished stage's folder holds a spec.yaml too
        folder = os.path.normpath(run_dir)
        raise StageError(
            f"{run_dir}: the folder of the {os.path.basename(folder)} stage, not a run directory; "
            f"give the run directory, {os.path.dirname(folder) or '.'}"
        )
    if not os.path.exists(spec_path):
        raise StageError(f"{run_dir}: not a tfkd run directory (no spec.yaml)")
    if stage is not None and os.path.exists(os.path.join(run_dir, stage, SPEC_FILE)):
        spec_path = os.path.join(run_dir, stage, SPEC_FILE)
    origin = {}
    if os.path.exists(os.path.join(run_dir, "origin.json")):
        with open(os.path.join(run_dir, "origin.json")) as f:
            origin = json.load(f)
    spec = load_spec(spec_path, import_dir=origin.get("spec_dir"))
    # the run directory may have moved since: use where it is now
    spec = spec.model_copy(
        update={
            "run_dir": os.path.dirname(os.path.abspath(run_dir)),
            "name": os.path.basename(os.path.abspath(run_dir)),
        }
    )
    runner = Runner(spec, plan_run(spec))
    return spec, runner, RunContext(spec, runner)


def open_finished_run(run_dir, stage):
    """``(spec, runner, context)`` of a run whose ``stage`` finished; reads no corpus."""
    from tfkd.comparison import compared_students
    from tfkd.errors import SpecError

    spec, runner, context = open_run(run_dir, stage)
    trained = [t for t, _ in compared_students(spec) if t in runner.stages]
    if stage not in runner.stages or (stage != "train" and stage not in trained):
        raise SpecError(f"--student {stage}: not a student of {run_dir}; choices: {', '.join(trained)}")
    if not runner.is_finished(stage):
        raise StageError(f"{run_dir}: the {stage} stage is not finished (run: tfkd run SPEC --stages {stage})")
    return spec, runner, context
