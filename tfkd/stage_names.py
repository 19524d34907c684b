"""The names of a run's stages, in the order they run, from its task and method.

``vocab``; the stages the method adds (a teacher's fine-tuning and cache, say); ``baseline``
and ``baseline_evaluate`` (the same student trained by the default method, for comparison;
offered when the method is not already that); for each of the spec's ``variants`` (students
trained beside the main one with a few settings changed) a train stage of its name and
``<name>_evaluate``; ``train``, ``evaluate`` and ``export``. When a train stage trains on a
teacher's decoded outputs (``distill.targets: teacher_beam``), ``teacher_translations`` runs
right after the stage it translates with (after its ``_evaluate``), or right after the
method's stages when ``targets_from`` is an exported model. Spec validation and
:mod:`tfkd.pipeline` both read them; nothing here imports TensorFlow.
"""

from tfkd import registry

# the stage that writes the training split's targets decoded by a teacher (sequence-level KD)
TARGETS_STAGE = "teacher_translations"
TEACHER_TARGETS = "teacher_beam"


def is_model_path(source):
    """Whether a ``targets_from`` value is a path (of an exported model) rather than a stage
    name: stage names have no path separator."""
    return "/" in source or "\\" in source


def teacher_targets_users(spec):
    """``[(variant name or None, its spec)]`` of the run's train stages that train on teacher
    outputs (the main stage as ``None``; variants once the spec has resolved them)."""
    resolved = getattr(spec, "_variants", None) or {}
    specs = [(None, spec), *((name, resolved[name]) for name in spec.variants or {} if name in resolved)]
    return [(name, own) for name, own in specs if getattr(own.distill, "targets", None) == TEACHER_TARGETS]


def teacher_targets_source(spec):
    """The run's ``targets_from`` (a train stage or an exported model), or ``None`` when no
    stage trains on teacher outputs."""
    users = teacher_targets_users(spec)
    return users[0][1].distill.targets_from if users else None


def _with_targets_stage(spec, names):
    """``names`` with :data:`TARGETS_STAGE` where it runs (left out if its source is not a
    train stage that runs before ``train``: spec validation says so)."""
    source = teacher_targets_source(spec)
    if source is None:
        return names
    after = f"{source}_evaluate" if not is_model_path(source) else None
    if after is None:
        position = 1 + len(method_stage_names(spec))
    elif after in names and source in variant_and_baseline_names(spec):
        position = names.index(after) + 1
    else:
        return names
    return names[:position] + [TARGETS_STAGE] + names[position:]


def method_stage_names(spec):
    """The stages the spec's method adds with the spec's settings and those of the variants
    trained by the same method (a variant pre-trained without distillation needs the stage
    that does so), in the order the method declares them."""
    method = registry.lookup("method", spec.method)
    task = registry.lookup("task", spec.task)
    wanted = set(method.stage_names_for(spec.distill, task))
    resolved = getattr(spec, "_variants", None) or {}
    for name in spec.variants or {}:
        if name in resolved and resolved[name].method == spec.method:
            wanted |= set(method.stage_names_for(resolved[name].distill, task))
    return [name for name in method.stage_names if name in wanted]


def variant_stage_names(spec):
    return [n for name in (spec.variants or {}) for n in (name, f"{name}_evaluate")]


def has_baseline(spec):
    return registry.lookup("method", spec.method).compares_with_baseline and spec.method != registry.default("method")


def variant_and_baseline_names(spec):
    """The train stages that run before ``train``: ``baseline`` (when offered) and the variants."""
    return [*(["baseline"] if has_baseline(spec) else []), *(spec.variants or {})]


def stage_names(spec):
    """Every stage this spec's task and method offer, in the order they run."""
    names = ["vocab", *method_stage_names(spec)]
    if has_baseline(spec):
        names += ["baseline", "baseline_evaluate"]
    return _with_targets_stage(spec, names + variant_stage_names(spec) + ["train", "evaluate", "export"])


def default_stage_names(spec):
    """What ``tfkd run`` runs when neither the spec nor ``--stages`` lists stages (declared
    variants included; the teacher translations and the stage they read, when a stage trains
    on them)."""
    baseline = ["baseline", "baseline_evaluate"] if has_baseline(spec) and registry.lookup(
        "method", spec.method).baseline_by_default else []
    names = ["vocab", *method_stage_names(spec), *baseline, *variant_stage_names(spec), "train", "evaluate"]
    available = stage_names(spec)
    if TARGETS_STAGE in available:
        source = teacher_targets_source(spec)
        names += [TARGETS_STAGE, *([source, f"{source}_evaluate"] if not is_model_path(source) else [])]
    return sorted(dict.fromkeys(names), key=available.index)
