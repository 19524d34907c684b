"""Spec settings of distillation several methods share (pydantic only: specs validate without
TensorFlow): the divergence family and its temperature schedule, and the soft/xe weighting.
The teachers' own stage settings are in :mod:`tfkd.teachers.settings`."""

from typing import ClassVar, Literal

import pydantic
from pydantic import Field

from tfkd.spec import Strict

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


def alpha_or_weights(section):
    """A section's validator (``pydantic.model_validator(mode="after")``): ``alpha`` (which sets
    ``{soft: alpha, xe: 1 - alpha}``) or ``loss_weights``, not both."""
    if section.loss_weights is not None and "alpha" in section.model_fields_set:
        raise ValueError("give alpha or loss_weights, not both (alpha sets {soft: alpha, xe: 1 - alpha})")
    return section


__all__ = [
    "DIVERGENCES",
    "DivergenceSettings",
    "ScheduledDivergenceSettings",
    "TemperatureScheduleSpec",
    "alpha_or_weights",
    "schedule_without_tail",
]
