"""Where sequence-level KD's ``teacher_translations`` stage goes in a run's plan (the
translation task's :meth:`~tfkd.tasks.Task.extend_plan`). Importing this does not import
TensorFlow: spec validation and ``tfkd config`` read the plan.

When a train stage trains on a teacher's decoded outputs (``distill.targets: teacher_beam``),
``teacher_translations`` runs right after the stage it translates with (after its
``_evaluate``), or right after the method's stages when ``targets_from`` is an exported model;
the train stages that read it depend on it.
"""

import functools
import json

from tfkd.methods.base import TEACHER_TARGETS
from tfkd.plan import PlannedStage

# the stage that writes the training split's targets decoded by a teacher
TARGETS_STAGE = "teacher_translations"


def is_model_path(source):
    """Whether a ``targets_from`` value is a path (of an exported model) rather than a stage
    name: stage names have no path separator."""
    return "/" in source or "\\" in source


def teacher_targets_users(spec):
    """``[(variant name or None, its spec)]`` of the run's train stages that train on teacher
    outputs (the main stage as ``None``; variants once the spec has resolved them)."""
    resolved = spec._variants or {}
    specs = [(None, spec), *((name, resolved[name]) for name in spec.variants or {} if name in resolved)]
    return [(name, own) for name, own in specs if own.distill.targets == TEACHER_TARGETS]


def teacher_targets_source(spec):
    """The run's ``targets_from`` (a train stage or an exported model), or ``None`` when no
    stage trains on teacher outputs."""
    users = teacher_targets_users(spec)
    return users[0][1].distill.targets_from if users else None


def _stage_view(planned, spec):
    """The view of ``spec`` the planned train stage trains with."""
    return planned.make().view(spec)


def extend_plan(context, plan):
    """Insert ``teacher_translations`` where it runs (left out when its source is not a train
    stage that runs before ``train``: spec validation says so)."""
    spec = context.spec
    source = teacher_targets_source(spec)
    if source is None:
        return
    from_export = is_model_path(source)
    if from_export:
        position = plan.names.index("vocab") + 1 + len(plan.with_role("method"))
        depends, source_spec = (), None
    else:
        if source not in plan.with_role("train") or source == "train" or f"{source}_evaluate" not in plan:
            return
        position = plan.names.index(f"{source}_evaluate") + 1
        depends, source_spec = ("vocab", source), functools.partial(_stage_view, plan[source])
        for name in (source, f"{source}_evaluate"):
            plan[name].default = True
    plan.insert(
        position,
        PlannedStage(
            TARGETS_STAGE,
            depends,
            "tfkd.tasks.translation.sequence_kd:TeacherTranslationsStage",
            {"source": source, "source_spec": source_spec},
            role="task",
        ),
    )
    for variant, _ in teacher_targets_users(spec):
        plan.add_dependency(variant or "train", TARGETS_STAGE)


def check_decoded_targets(spec, located):
    """``distill.targets``/``targets_from`` of the run's train stages: teacher_beam needs a source;
    one source per run; a train stage of this run that runs before every stage training on its
    translations (or an exported model); a task and methods that can train on them."""
    from tfkd import registry
    from tfkd.context import RunContext
    from tfkd.spec import targets_error as _targets_error

    for variant, own in [(None, spec), *((name, spec.variant(name)) for name in spec.variants or {})]:
        section = own.distill
        if section.targets == TEACHER_TARGETS and section.targets_from is None:
            raise _targets_error(
                located,
                variant,
                "targets",
                "teacher_beam needs distill.targets_from: the train "
                "stage (baseline or a variant) or the exported model version folder whose "
                "beam-search translations of the training sources replace the references",
            )
        if section.targets != TEACHER_TARGETS and section.targets_from is not None:
            raise _targets_error(located, variant, "targets_from", "applies with targets: teacher_beam only")
    users = teacher_targets_users(spec)
    if not users:
        return
    for variant, own in users:
        problem = registry.lookup("method", own.method).decoded_targets_problem(RunContext(own))
        if problem:
            raise _targets_error(located, variant, "targets", f"method {own.method}: {problem}")
    first, source = users[0][0], users[0][1].distill.targets_from
    for variant, own in users[1:]:
        if own.distill.targets_from != source:
            named = "distill.targets_from" if first is None else f"variants.{first}"
            raise _targets_error(
                located,
                variant,
                "targets_from",
                f"a run translates its training split with one model: {named} says "
                f"{json.dumps(source)}, this says {json.dumps(own.distill.targets_from)}",
            )
    if not is_model_path(source):
        _check_source_stage(spec, located, source, first, users)


def _check_source_stage(spec, located, source, first, users):
    """The train stage ``source`` that translates for ``users`` (``(variant, spec)`` pairs, the
    first ``first``'s) runs in this run before ``train`` and before each of them."""
    from tfkd import registry
    from tfkd.plan import plan_run
    from tfkd.spec import targets_error as _targets_error

    plan = plan_run(spec)
    candidates = [name for name in plan.with_role("train") if name != "train"]
    if source not in candidates:
        if source == "train":
            message = "stage train cannot translate for itself"
        elif source in plan.names:
            message = f"stage {json.dumps(source)} is not a train stage that runs before train"
        else:
            hint = registry.did_you_mean(source, candidates).strip()
            message = f"unknown stage {json.dumps(source)}" + (f" ({hint})" if hint else "")
        choices = ", ".join(candidates) if candidates else "none in this run"
        raise _targets_error(
            located,
            first,
            "targets_from",
            f"{message}; expected a train stage whose student translates (train stages "
            f"before train: {choices}) or the path of an exported model version folder "
            "(<run>/export/<model>/<version>)",
        )
    at = plan.names.index(TARGETS_STAGE)
    for variant, _ in users:
        if variant is not None and plan.names.index(variant) < at:
            raise _targets_error(
                located,
                variant,
                "targets",
                f"variant {variant} would run before {TARGETS_STAGE} (which follows stage "
                f"{source}); declare it after {source} in variants, or train it on the "
                "references (targets: reference)",
            )


__all__ = [
    "check_decoded_targets",
    "TARGETS_STAGE",
    "TEACHER_TARGETS",
    "extend_plan",
    "is_model_path",
    "teacher_targets_source",
    "teacher_targets_users",
]
