"""Learning-rate schedules."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfkd")
class InverseSqrtSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The warm-up then inverse-square-root schedule of Vaswani et al., as in cmlm_kd 4.1.

    ``lr = scale * hidden_dim**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)``,
    with ``step`` counted from 1.

    Args:
        scale: the paper's eta (peak multiplier).
        hidden_dim: the model width ``d_model``.
        warmup_steps: steps of linear warm-up.

    Example:
    >>> schedule = tfkd.training.InverseSqrtSchedule(1.0, 512, 4000)
    """

    def __init__(self, scale, hidden_dim, warmup_steps):
        self.scale = scale
        self.hidden_dim = hidden_dim
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        warmup = float(self.warmup_steps)
        return self.scale * float(self.hidden_dim) ** -0.5 * ops.minimum(ops.rsqrt(step), step * warmup**-1.5)

    def get_config(self):
        return {"scale": self.scale, "hidden_dim": self.hidden_dim, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="tfkd")
class TriangularSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``warmup_steps``, then linear decay to 0 at ``total_steps``
    (the C-MLM fine-tuning schedule of cmlm_kd 4.1, as in BERT).

    Args:
        peak: the maximum learning rate.
        warmup_steps: steps of linear warm-up.
        total_steps: the step at which the rate reaches 0.
    """

    def __init__(self, peak, warmup_steps, total_steps):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        warmup = step / max(float(self.warmup_steps), 1.0)
        decay = (float(self.total_steps) - step) / max(float(self.total_steps - self.warmup_steps), 1.0)
        return self.peak * ops.maximum(ops.minimum(warmup, decay), 0.0)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def section_adam(settings, clipnorm=None):
    """Adam on the triangular schedule of a section that trains one model (a teacher's
    fine-tuning, an MLM head, a pre-training: ``learning_rate`` peak, ``warmup_steps``,
    ``steps``), its gradients' global norm clipped at ``clipnorm`` when given."""
    schedule = TriangularSchedule(settings.learning_rate, settings.warmup_steps, settings.steps)
    return keras.optimizers.Adam(schedule, global_clipnorm=clipnorm)
