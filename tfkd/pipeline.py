"""Assembles a run's stages from its task and method; opens finished run directories.

The stages of a run are, in order: ``vocab``; the stages the method adds (a teacher's
fine-tuning and cache, say); ``baseline`` and ``baseline_evaluate`` (the same student trained
on the references alone, for comparison; offered when the method is not already that and
says the comparison means something: :attr:`tfkd.methods.Method.compares_with_baseline`);
each variant's train and evaluate stages (the spec's ``variants``: the student trained with a
few settings changed, decoded with the variant's ``decode``); ``teacher_translations`` where a
train stage trains on a teacher's decoded outputs (the task's stage, see
:meth:`tfkd.tasks.Task.teacher_targets_stage`); ``train`` (the student with the spec's method), ``evaluate`` and
``export``. Nothing here
names a method or a task: both come from the registry.

Importing this module does not import TensorFlow (``tfkd validate`` lists stage names).
"""

import json
import os

from tfkd import registry
from tfkd.errors import SpecError, StageError
from tfkd.spec import load_spec
from tfkd.stage_names import TARGETS_STAGE, default_stage_names, stage_names, teacher_targets_source


def requested_stages(spec, names=None):
    """``names`` (default: the spec's ``stages``, else the defaults) in the order they run."""
    available = stage_names(spec)
    names = list(names if names is not None else (spec.stages or default_stage_names(spec)))
    unknown = [n for n in names if n not in available]
    if unknown:
        raise SpecError(f"--stages: unknown stage {unknown[0]!r} for task {spec.task} and method "
                        f"{spec.method};{registry.did_you_mean(unknown[0], available)} "
                        f"Choices: {', '.join(available)}")
    return sorted(dict.fromkeys(names), key=available.index)


def build_stages(spec):
    """The :class:`tfkd.runner.Stage` objects of every stage in :func:`stage_names`."""
    from tfkd.stages import EvaluateStage, ExportStage, TrainStage, VocabStage

    method = registry.lookup("method", spec.method)
    stages = [VocabStage(), *method.stages(spec)]
    if method.compares_with_baseline and spec.method != registry.default("method"):
        stages += [TrainStage("baseline", registry.lookup("method", registry.default("method"))),
                   EvaluateStage("baseline_evaluate", "baseline")]
    for name in spec.variants or {}:
        variant = spec.variant(name)
        stages += [TrainStage(name, registry.lookup("method", variant.method), variant=name),
                   EvaluateStage(f"{name}_evaluate", name, variant=name)]
    stages += [TrainStage("train", method), EvaluateStage("evaluate", "train"), ExportStage("export", "train")]
    source = teacher_targets_source(spec)
    if source is not None:  # sequence-level KD: the task decodes the training split with the source
        reader = next((s for s in stages if s.name == source and isinstance(s, TrainStage)), None)
        targets = registry.lookup("task", spec.task).teacher_targets_stage(spec, source,
                                                                           reader._spec if reader else None)
        stages.insert(stage_names(spec).index(TARGETS_STAGE), targets)
    built = [s.name for s in stages]
    if built != stage_names(spec):
        raise RuntimeError(f"method {spec.method} declares stages {method.stage_names_for(spec.distill, registry.lookup('task', spec.task))} but builds "
                           f"{built}")
    return stages


def open_run(run_dir, stage=None):
    """``(spec, runner, context)`` of a run directory, from the resolved spec it holds: the one
    ``stage`` was produced with, when it finished (a later ``tfkd run`` with other settings
    that did not finish leaves it as it was), else the run's."""
    from tfkd.runner import SPEC_FILE, Runner
    from tfkd.stages import RunContext

    spec_path = os.path.join(run_dir, SPEC_FILE)
    if not os.path.exists(run_dir):
        raise StageError(f"{run_dir}: no such file or directory")
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
    spec = spec.model_copy(update={"run_dir": os.path.dirname(os.path.abspath(run_dir)),
                                   "name": os.path.basename(os.path.abspath(run_dir))})
    runner = Runner(spec, build_stages(spec))
    return spec, runner, RunContext(spec, runner)
