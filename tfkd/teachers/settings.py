"""Spec sections of the teachers' stages (pydantic only: specs validate without TensorFlow):
C-MLM fine-tuning and its soft-target cache (``soft_target`` and ``ensemble``), a teacher
checkpoint's MLM head and its top-K cache (``mask_task`` and ``two_stage``)."""

from typing import ClassVar, Literal

import pydantic
from pydantic import Field, NonNegativeInt, PositiveInt

from tfkd.spec import Seed, Strict


class TeacherMLMSpec(Strict):
    """Training a teacher checkpoint's tied MLM head (the ``teacher_mlm`` stage,
    :mod:`tfkd.teachers.mlm_head`) on the method's text."""

    steps: PositiveInt = 400
    batch_size: PositiveInt = 32
    learning_rate: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(40, ge=0)
    max_length: PositiveInt = 128
    log_every: PositiveInt = 100
    seed: Seed = 1
    # the top transformer layers trained with the head (0: the head alone; "all": every layer)
    train_layers: Literal["all"] | NonNegativeInt = 2


class TopKCacheSpec(Strict):
    """``distill.teacher: cache``: one fixed masking per training example and the teacher's
    top-K at its masked positions, written once by a ``teacher_mlm_cache`` stage (the mask-task
    method's sources, LightPAFF's pre-training pieces) and streamed back."""

    top_k: PositiveInt = 8
    temperature: float = Field(1.0, gt=0)
    batch_size: PositiveInt = 64
    shard_size: PositiveInt = 10000
    # training reads the cache through a shuffle buffer of this many examples (its memory bound)
    shuffle_buffer: PositiveInt = 10000
    # seeds each example's fixed masking (with its example id)
    seed: Seed = 1


def check_cache_use(section):
    """A method section's ``cache`` settings need ``teacher: cache`` (the defaults, which a
    resolved spec dumps, are fine with ``online``)."""
    if section.teacher == "online" and "cache" in section.model_fields_set and section.cache != TopKCacheSpec():
        raise ValueError("cache applies to teacher: cache only")
    return section


class CMLMFinetuneSpec(Strict):
    """C-MLM fine-tuning of the teacher (cmlm_kd 3.2)."""

    steps: PositiveInt = 1000
    batch_size: PositiveInt = 32
    learning_rate: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(100, ge=0)
    mask_rate: float = Field(0.15, gt=0, le=1)
    max_length: PositiveInt = 128
    log_every: PositiveInt = 100
    seed: Seed = 1
    # "left_to_right": the paper's BERT_l2r ablation (each target token from the source and
    # the target before it, no masking); the cache then needs one pass per pair
    direction: Literal["bidirectional", "left_to_right"] = "bidirectional"
    # training batches of pairs whose [CLS] X [SEP] Y [SEP] lengths fall in the same multiple of
    # bucket_width, grouped as they stream from the shuffle (each batch is padded to its
    # longest pair: random batches of Multi30k pairs are about 43% padding); unset, random batches
    bucket_width: PositiveInt | None = None

    omitted_when_default: ClassVar[tuple] = ("bucket_width",)

    @pydantic.model_serializer(mode="wrap")
    def _omit_unset_buckets(self, handler):
        # unset, left out of dumps: the teacher_finetune keys of earlier runs stay
        data = handler(self)
        if isinstance(data, dict) and self.bucket_width is None:
            data.pop("bucket_width", None)
        return data


class SoftTargetCacheSpec(Strict):
    """Top-K soft targets for every target position, each predicted while masked."""

    top_k: PositiveInt = 8
    temperature: float = Field(1.0, gt=0)
    mask_rate: float = Field(0.15, gt=0, le=1)
    batch_size: PositiveInt = 64
    shard_size: PositiveInt = 10000
    # training reads the cache through a shuffle buffer of this many examples (its memory bound)
    shuffle_buffer: PositiveInt = 10000


__all__ = ["CMLMFinetuneSpec", "SoftTargetCacheSpec", "TeacherMLMSpec", "TopKCacheSpec", "check_cache_use"]
