"""The soft targets' temperature as a schedule over the student's training steps
(``distill.temperature_schedule``), applied to a top-K teacher cache.

A cache written at temperature ``T`` holds, per position, the teacher's K most likely tokens
with ``p_k = exp(z_k / T) / Z``. Raised to the power ``T / T'`` and renormalised over the K,
those become ``exp(z_k / T') / sum_j exp(z_j / T')``: exactly the teacher's distribution over
the same K at temperature ``T'`` (the K most likely tokens are the same at every temperature).
So one cache serves every temperature, and the temperature can change as the student trains
(as TextBrewer's and DistillKit's temperature schedules do) without the teacher running again.
The mass outside the K (the cache's tail) is a sum over the rest of the vocabulary and cannot
be re-tempered from it; a schedule therefore compares over the K renormalised.

``constant`` holds ``start`` (another temperature than the cache's, without rewriting it);
``linear`` goes from ``start`` at step 0 to ``end`` at the last step; ``cosine`` goes from
``start`` to ``end`` along half a cosine. Past the last step the temperature stays at ``end``.
"""

import dataclasses
import math

from keras import ops


@dataclasses.dataclass(frozen=True)
class TemperatureSchedule:
    """``kind`` from ``start`` to ``end`` over ``steps`` optimizer steps, for a cache written at
    ``cache_temperature``."""

    kind: str
    start: float
    end: float
    steps: int
    cache_temperature: float

    @classmethod
    def of(cls, section, steps, cache_temperature):
        """The schedule of a method section's ``temperature_schedule`` (``None`` when unset)."""
        schedule = section.temperature_schedule
        if schedule is None:
            return None
        end = schedule.start if schedule.end is None else schedule.end
        return cls(schedule.kind, schedule.start, end, int(steps), float(cache_temperature))

    def temperature(self, step):
        """The temperature at optimizer step ``step`` (a number or a scalar tensor)."""
        if self.kind == "constant":
            return ops.convert_to_tensor(self.start, "float32")
        done = ops.minimum(ops.cast(step, "float32") / float(max(self.steps, 1)), 1.0)
        if self.kind == "linear":
            return self.start + (self.end - self.start) * done
        if self.kind == "cosine":
            return self.end + (self.start - self.end) * 0.5 * (1.0 + ops.cos(math.pi * done))
        raise ValueError(f"temperature schedule {self.kind!r}: expected constant, linear or cosine")

    def apply(self, teacher_probs, temperature):
        """``teacher_probs`` (``[..., K]``, written at the cache's temperature) at
        ``temperature`` (the step's, :meth:`temperature`), renormalised over the K."""
        return retemper(teacher_probs, self.cache_temperature / temperature)

    @staticmethod
    def scale(teacher_logits, temperature):
        """A teacher's logits run online, divided by ``temperature`` (their softmax is then the
        teacher's distribution at that temperature)."""
        return ops.cast(teacher_logits, "float32") / temperature


class ScheduledTemperature:
    """A trainer mix-in: its ``temperature`` schedule (``None``: none) and the step's
    temperature as a reported metric (progress logs, TensorBoard). Call
    :meth:`init_temperature` in ``__init__`` and add :meth:`temperature_metrics` to
    ``metrics``."""

    def init_temperature(self, schedule):
        self.temperature = schedule
        if schedule is not None:
            import keras

            self.temperature_tracker = keras.metrics.Mean(name="temperature")

    def temperature_metrics(self):
        return [self.temperature_tracker] if self.temperature is not None else []

    def step_temperature(self):
        """The optimizer step's temperature (computed once a step), recorded in the reported
        metric."""
        value = self.temperature.temperature(self.optimizer.iterations)
        self.temperature_tracker.update_state(value)
        return value


def retemper(teacher_probs, power):
    """``p_k ** power`` renormalised over the last axis (``power`` = the cache's temperature
    over the new one); all-zero rows (padding) stay zero. Computed in log space, so that a
    large power does not underflow every probability of a row."""
    p = ops.cast(teacher_probs, "float32")
    real = ops.sum(p, axis=-1, keepdims=True) > 0
    logits = ops.where(p > 0, ops.log(ops.maximum(p, 1e-30)) * power, -1e30)
    return ops.where(real & (p > 0), ops.softmax(logits, axis=-1), 0.0)
