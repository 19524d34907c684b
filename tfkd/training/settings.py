"""Spec sections of training stages several methods share (pydantic only: specs validate
without TensorFlow)."""

from typing import Literal, Union

from pydantic import Field, NonNegativeInt, PositiveInt

from tfkd.spec import Strict


class TeacherMLMSpec(Strict):
    """Training a teacher checkpoint's tied MLM head (the ``teacher_mlm`` stage,
    :mod:`tfkd.training.teacher_mlm`) on the method's text."""

    steps: PositiveInt = 400
    batch_size: PositiveInt = 32
    learning_rate: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(40, ge=0)
    max_length: PositiveInt = 128
    log_every: PositiveInt = 100
    seed: int = 1
    # the top transformer layers trained with the head (0: the head alone; "all": every layer)
    train_layers: Union[Literal["all"], NonNegativeInt] = 2


__all__ = ["TeacherMLMSpec"]
