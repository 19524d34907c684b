"""``distill.targets``/``targets_from``: whether a train stage learns from the references or from
a teacher's decoded outputs (sequence-level KD). The task checks the settings
(:meth:`tfkd.tasks.Task.check_decoded_targets`: the translation task plans and checks
``teacher_translations``); here are the keys and the one-line error they share."""

from tfkd import registry
from tfkd.spec.messages import SpecError

# the distill keys choosing a train stage's targets (see tfkd.methods.MethodSpec)
TARGET_KEYS = ("targets", "targets_from")
# the value of distill.targets for a teacher's decoded outputs
TEACHER_TARGETS = "teacher_beam"


def targets_error(located, variant, key, message):
    """A one-line error at ``distill.<key>`` of the main spec or of variant ``variant``."""
    if variant is None:
        return located.error(("distill", key), message)
    for path in (
        ("variants", variant, f"distill.{key}"),
        ("variants", variant, "distill", key),
        ("variants", variant, "distill"),
    ):
        if path in located.lines:
            where = located.where(path)
            break
    else:
        where = located.where(("variants", variant))
    return SpecError(f"{where}: variants.{variant}.distill.{key}: {message}")


def _validate_targets(spec, located):
    """The task checks sequence-level KD's settings (:meth:`tfkd.tasks.Task.check_decoded_targets`)."""
    registry.lookup("task", spec.task).check_decoded_targets(spec, located)
