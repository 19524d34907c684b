"""Spec sections of the distillation stages several methods share (pydantic only: specs
validate without TensorFlow)."""

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from tfkd.spec import Strict


class TeacherMLMSpec(Strict):
    """Training a teacher checkpoint's tied MLM head (the ``teacher_mlm`` stage,
    :mod:`tfkd.distillation.teacher_mlm`) on the method's text."""

    steps: PositiveInt = 400
    batch_size: PositiveInt = 32
    learning_rate: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(40, ge=0)
    max_length: PositiveInt = 128
    log_every: PositiveInt = 100
    seed: int = 1
    # the top transformer layers trained with the head (0: the head alone; "all": every layer)
    train_layers: Literal["all"] | NonNegativeInt = 2


class TopKCacheSpec(Strict):
    """``distill.teacher: cache``: one fixed masking per training example and the teacher's
    top-K at its masked positions, written once by a ``teacher_cache`` stage (the mask-task
    method's sources, LightPAFF's pre-training pieces) and streamed back."""

    top_k: PositiveInt = 8
    temperature: float = Field(1.0, gt=0)
    batch_size: PositiveInt = 64
    shard_size: PositiveInt = 10000
    # training reads the cache through a shuffle buffer of this many examples (its memory bound)
    shuffle_buffer: PositiveInt = 10000
    # seeds each example's fixed masking (with its example id)
    seed: int = 1


def check_cache_use(section):
    """A method section's ``cache`` settings need ``teacher: cache`` (the defaults, which a
    resolved spec dumps, are fine with ``online``)."""
    if section.teacher == "online" and "cache" in section.model_fields_set and section.cache != TopKCacheSpec():
        raise ValueError("cache applies to teacher: cache only")
    return section


__all__ = ["TeacherMLMSpec", "TopKCacheSpec", "check_cache_use"]
