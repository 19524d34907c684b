"""Spec sections of the distillation stages several methods share (pydantic only: specs
validate without TensorFlow): the C-MLM teacher's (``soft_target`` and ``ensemble``), a
teacher's MLM head and its top-K cache (``mask_task`` and ``two_stage``)."""

from typing import ClassVar, Literal

import pydantic
from pydantic import Field, NonNegativeInt, PositiveInt

from tfkd.spec import Seed, Strict

# the family :mod:`tfkd.distillation.divergences` computes (named here: this module imports no
# TensorFlow)
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "tvd", "skew_kl", "skew_reverse_kl")


class DivergenceSettings(Strict):
    """What a student's distribution is compared with its teacher's by
    (:mod:`tfkd.distillation.divergences`): mixed into the section of a method that distils
    distributions, before ``MethodSpec`` (``class S(DivergenceSettings, MethodSpec)``), whose
    dumps then leave these settings out at their defaults (stage keys stay)."""

    divergence: Literal[DIVERGENCES] = "forward_kl"
    # jsd's mixture weight of the teacher (TRL's beta: 0 is forward KL, 1 reverse KL)
    beta: float = Field(0.5, ge=0, le=1)
    # skew_kl's / skew_reverse_kl's share of the other distribution in the mixture
    skew: float = Field(0.1, ge=0, lt=1)
    # a top-K teacher cache's mass outside its K as one more outcome (TRL's loss_add_tail);
    # false compares over the K renormalised
    tail: bool = False

    omitted_when_default: ClassVar[tuple] = ("divergence", "beta", "skew", "tail")

    def divergence_key(self):
        """``{"divergence": settings}`` of the settings that are not their defaults, for a
        train stage's key (``{}`` at the defaults: the keys of earlier runs stay)."""
        changed = self.model_dump(include=set(self.omitted_when_default), exclude_defaults=True)
        return {"divergence": changed} if changed else {}

    @pydantic.model_validator(mode="after")
    def _settings_of_the_divergence(self):
        if "beta" in self.model_fields_set and self.divergence != "jsd":
            raise ValueError(f"beta applies to divergence: jsd only (divergence is {self.divergence})")
        if "skew" in self.model_fields_set and not self.divergence.startswith("skew"):
            raise ValueError(
                f"skew applies to divergence: skew_kl or skew_reverse_kl only (divergence is {self.divergence})"
            )
        return self


class TemperatureScheduleSpec(Strict):
    """The soft targets' temperature over the student's steps, applied to the top-K cache
    written at ``cache.temperature`` (:mod:`tfkd.distillation.temperature`): ``constant``
    (``start`` throughout), ``linear`` or ``cosine`` from ``start`` to ``end``."""

    kind: Literal["constant", "linear", "cosine"] = "linear"
    start: float = Field(gt=0)
    end: float | None = Field(None, gt=0)

    @pydantic.model_validator(mode="after")
    def _end_of_the_kind(self):
        if self.kind == "constant" and self.end is not None:
            raise ValueError("a constant schedule has a start and no end")
        if self.kind != "constant" and self.end is None:
            raise ValueError(f"a {self.kind} schedule needs an end temperature")
        return self


def schedule_without_tail(section):
    """A section's validator: a temperature schedule re-tempers the cached K, and the tail mass
    outside them cannot be re-tempered."""
    if section.temperature_schedule is not None and section.tail:
        raise ValueError(
            "temperature_schedule re-tempers the cached top K, whose tail mass cannot be re-tempered: "
            "give temperature_schedule or tail, not both"
        )
    return section


class ScheduledDivergenceSettings(DivergenceSettings):
    """:class:`DivergenceSettings` and the soft targets' temperature as a schedule over the
    student's steps (:mod:`tfkd.distillation.temperature`), for the methods whose trainers
    apply it (soft_target, mask_task); left out of dumps and keys while unset."""

    temperature_schedule: TemperatureScheduleSpec | None = None

    omitted_when_default: ClassVar[tuple] = (*DivergenceSettings.omitted_when_default, "temperature_schedule")

    _schedule_without_tail = pydantic.model_validator(mode="after")(schedule_without_tail)


class TeacherMLMSpec(Strict):
    """Training a teacher checkpoint's tied MLM head (the ``teacher_mlm`` stage,
    :mod:`tfkd.distillation.teacher_mlm`) on the method's text."""

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
    top-K at its masked positions, written once by a ``teacher_cache`` stage (the mask-task
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


def alpha_or_weights(section):
    """A section's validator (``pydantic.model_validator(mode="after")``): ``alpha`` (which sets
    ``{soft: alpha, xe: 1 - alpha}``) or ``loss_weights``, not both."""
    if section.loss_weights is not None and "alpha" in section.model_fields_set:
        raise ValueError("give alpha or loss_weights, not both (alpha sets {soft: alpha, xe: 1 - alpha})")
    return section


__all__ = [
    "CMLMFinetuneSpec",
    "DIVERGENCES",
    "DivergenceSettings",
    "SoftTargetCacheSpec",
    "TeacherMLMSpec",
    "ScheduledDivergenceSettings",
    "TemperatureScheduleSpec",
    "TopKCacheSpec",
    "alpha_or_weights",
    "check_cache_use",
    "schedule_without_tail",
]
