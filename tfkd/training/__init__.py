"""Training: the trainer base (custom train_step with named loss terms), losses, schedules
and callbacks."""

from tfkd.lazy import lazy_attributes

_LAZY = {
    "Trainer": "tfkd.training.trainer",
    "LossTerm": "tfkd.training.trainer",
    "SupervisedTrainer": "tfkd.training.trainer",
    "InverseSqrtSchedule": "tfkd.training.schedules",
    "TriangularSchedule": "tfkd.training.schedules",
    "label_smoothed_cross_entropy": "tfkd.training.losses",
}


__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
