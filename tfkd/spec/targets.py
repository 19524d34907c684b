"""Sequence-level KD checks: ``distill.targets``/``targets_from`` of the run's train stages
(the main one and its variants), which train on a teacher's beam-search translations."""

import json

from tfkd import registry
from tfkd.spec.messages import SpecError
from tfkd.stage_names import (TARGETS_STAGE, TEACHER_TARGETS, is_model_path, stage_names, teacher_targets_users,
                              variant_and_baseline_names)


# the distill keys choosing a train stage's targets (see tfkd.methods.MethodSpec)
TARGET_KEYS = ("targets", "targets_from")


def _targets_error(located, variant, key, message):
    """A one-line error at ``distill.<key>`` of the main spec or of variant ``variant``."""
    if variant is None:
        return located.error(("distill", key), message)
    for path in (("variants", variant, f"distill.{key}"), ("variants", variant, "distill", key),
                 ("variants", variant, "distill")):
        if path in located.lines:
            where = located.where(path)
            break
    else:
        where = located.where(("variants", variant))
    return SpecError(f"{where}: variants.{variant}.distill.{key}: {message}")


def _validate_targets(spec, located):
    """``distill.targets``/``targets_from`` of the run's train stages: teacher_beam needs a source;
    one source per run; a train stage of this run that runs before every stage training on its
    translations (or an exported model); a task and methods that can train on them."""
    for variant, own in [(None, spec), *((name, spec.variant(name)) for name in spec.variants or {})]:
        section = own.distill
        if section.targets == TEACHER_TARGETS and section.targets_from is None:
            raise _targets_error(located, variant, "targets", "teacher_beam needs distill.targets_from: the train "
                                 "stage (baseline or a variant) or the exported model version folder whose "
                                 "beam-search translations of the training sources replace the references")
        if section.targets != TEACHER_TARGETS and section.targets_from is not None:
            raise _targets_error(located, variant, "targets_from", "applies with targets: teacher_beam only")
    users = teacher_targets_users(spec)
    if not users:
        return
    problem = registry.lookup("task", spec.task).teacher_targets_problem(spec)
    if problem:
        raise _targets_error(located, users[0][0], "targets", problem)
    for variant, own in users:
        problem = registry.lookup("method", own.method).teacher_targets_problem(own.distill)
        if problem:
            raise _targets_error(located, variant, "targets", f"method {own.method}: {problem}")
    first, source = users[0][0], users[0][1].distill.targets_from
    for variant, own in users[1:]:
        if own.distill.targets_from != source:
            named = "distill.targets_from" if first is None else f"variants.{first}"
            raise _targets_error(located, variant, "targets_from",
                                 f"a run translates its training split with one model: {named} says "
                                 f"{json.dumps(source)}, this says {json.dumps(own.distill.targets_from)}")
    if is_model_path(source):
        return
    candidates = variant_and_baseline_names(spec)
    if source not in candidates:
        available = stage_names(spec)
        if source == "train":
            message = "stage train cannot translate for itself"
        elif source in available:
            message = f"stage {json.dumps(source)} is not a train stage that runs before train"
        else:
            hint = registry.did_you_mean(source, candidates).strip()
            message = f"unknown stage {json.dumps(source)}" + (f" ({hint})" if hint else "")
        choices = ", ".join(candidates) if candidates else "none in this run"
        raise _targets_error(located, first, "targets_from",
                             f"{message}; expected a train stage whose student translates (train stages "
                             f"before train: {choices}) or the path of an exported model version folder "
                             "(<run>/export/<model>/<version>)")
    names = stage_names(spec)
    at = names.index(TARGETS_STAGE)
    for variant, _ in users:
        if variant is not None and names.index(variant) < at:
            raise _targets_error(located, variant, "targets",
                                 f"variant {variant} would run before {TARGETS_STAGE} (which follows stage "
                                 f"{source}); declare it after {source} in variants, or train it on the "
                                 "references (targets: reference)")
