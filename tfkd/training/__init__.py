"""Training models (custom train_steps), losses, schedules and callbacks."""

from tfkd.training.losses import label_smoothed_cross_entropy
from tfkd.training.schedules import InverseSqrtSchedule
from tfkd.training.seq2seq import Seq2SeqTrainer

__all__ = ["InverseSqrtSchedule", "Seq2SeqTrainer", "label_smoothed_cross_entropy"]
