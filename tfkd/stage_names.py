"""The names of a run's stages, in the order they run, from its task and method.

``vocab``; the stages the method adds (a teacher's fine-tuning and cache, say); ``baseline``
and ``baseline_evaluate`` (the same student trained by the default method, for comparison;
offered when the method is not already that); ``train``, ``evaluate`` and ``export``. Spec
validation and :mod:`tfkd.pipeline` both read them; nothing here imports TensorFlow.
"""

from tfkd import registry


def stage_names(spec):
    """Every stage this spec's task and method offer, in the order they run."""
    names = ["vocab", *registry.lookup("method", spec.method).stage_names]
    if spec.method != registry.default("method"):
        names += ["baseline", "baseline_evaluate"]
    return names + ["train", "evaluate", "export"]


def default_stage_names(spec):
    """What ``tfkd run`` runs when neither the spec nor ``--stages`` lists stages."""
    return ["vocab", *registry.lookup("method", spec.method).stage_names, "train", "evaluate"]


