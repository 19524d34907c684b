"""The names of a run's stages, in the order they run, from its task and method.

``vocab``; the stages the method adds (a teacher's fine-tuning and cache, say); ``baseline``
and ``baseline_evaluate`` (the same student trained by the default method, for comparison;
offered when the method is not already that); for each of the spec's ``variants`` (students
trained beside the main one with a few settings changed) a train stage of its name and
``<name>_evaluate``; ``train``, ``evaluate`` and ``export``. Spec validation and
:mod:`tfkd.pipeline` both read them; nothing here imports TensorFlow.
"""

from tfkd import registry


def method_stage_names(spec):
    """The stages the spec's method adds with the spec's settings."""
    return list(registry.lookup("method", spec.method).stage_names_for(spec.distill))


def variant_stage_names(spec):
    return [n for name in (spec.variants or {}) for n in (name, f"{name}_evaluate")]


def stage_names(spec):
    """Every stage this spec's task and method offer, in the order they run."""
    names = ["vocab", *method_stage_names(spec)]
    if registry.lookup("method", spec.method).compares_with_baseline and spec.method != registry.default("method"):
        names += ["baseline", "baseline_evaluate"]
    return names + variant_stage_names(spec) + ["train", "evaluate", "export"]


def default_stage_names(spec):
    """What ``tfkd run`` runs when neither the spec nor ``--stages`` lists stages (declared
    variants included)."""
    return ["vocab", *method_stage_names(spec), *variant_stage_names(spec),
            "train", "evaluate"]
