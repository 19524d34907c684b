"""Training: the trainer base (custom train_step with named loss terms), losses, schedules
and callbacks."""

_LAZY = {
    "Trainer": "tfkd.training.trainer",
    "LossTerm": "tfkd.training.trainer",
    "SupervisedTrainer": "tfkd.training.trainer",
    "InverseSqrtSchedule": "tfkd.training.schedules",
    "TriangularSchedule": "tfkd.training.schedules",
    "label_smoothed_cross_entropy": "tfkd.training.losses",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfkd.training' has no attribute {name!r}")


__all__ = sorted(_LAZY)
