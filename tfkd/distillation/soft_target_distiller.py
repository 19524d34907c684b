"""Soft-target distillation (cmlm_kd.txt, eq. 4-5): the student learns from cached top-K
teacher distributions as well as from the reference."""

import keras
from keras import ops

from tfkd.distillation.divergences import Divergence
from tfkd.distillation.temperature import ScheduledTemperature
from tfkd.training.losses import top_k_soft_cross_entropy
from tfkd.training.trainer import LossTerm, SupervisedTrainer


class SoftTargetDistiller(ScheduledTemperature, SupervisedTrainer):
    """``soft * L_bidi + xe * L_xe`` (``soft = alpha``, ``xe = 1 - alpha`` by default) with
    soft targets streamed from the teacher cache.

    The batch's inputs carry ``teacher_ids`` and ``teacher_probs`` (``[B, T, K]``, aligned with
    the target positions); the teacher itself is never run here. The temperature was applied
    to the teacher when the cache was written, never to the student (the paper's footnote 6).
    Label smoothing applies to ``L_xe`` only. Both terms are normalised by target tokens.
    ``L_bidi`` is the soft cross-entropy (forward KL over the renormalised top K, up to the
    teacher's entropy) unless ``divergence`` names another one or the cache's tail mass
    (``teacher_tail``, ``[B, T]``, a batch column when the cache keeps it).

    Args:
        student: the seq2seq student.
        task: the run's task (token-level targets).
        loss_weights: ``{"soft": ..., "xe": ...}``.
        label_smoothing: epsilon of ``L_xe``.
        divergence: a :class:`tfkd.distillation.divergences.Divergence`.
        temperature: a :class:`tfkd.distillation.temperature.TemperatureSchedule` that
            re-tempers the cached probabilities at each optimizer step (``None``: as cached).
    """

    def __init__(self, student, task, loss_weights, label_smoothing=0.1, divergence=None, temperature=None, **kwargs):
        super().__init__(student, task, label_smoothing=label_smoothing, loss_weights=loss_weights, **kwargs)
        self.divergence = divergence or Divergence()
        self.init_temperature(temperature)

    @property
    def metrics(self):
        return [*super().metrics, *self.temperature_metrics()]

    def compute_terms(self, data, training):
        logits, terms, tokens = self.task.supervised_terms(self.student, data, training, self.label_smoothing)
        inputs, target_ids, _ = keras.utils.unpack_x_y_sample_weight(data)
        if "teacher_ids" in inputs:  # validation batches carry no soft targets
            mask = ops.cast(ops.not_equal(target_ids, self.student.pad_id), "float32")
            probs = inputs["teacher_probs"]
            if self.temperature is not None:
                probs = self.temperature.apply(probs, self.step_temperature())
            if self.divergence.is_soft_cross_entropy:  # the paper's L_bidi, as tfkd has always reported it
                soft = top_k_soft_cross_entropy(inputs["teacher_ids"], probs, logits)
            else:
                soft = self.divergence.top_k(inputs["teacher_ids"], probs, logits, inputs.get("teacher_tail"))
            terms["soft"] = LossTerm(ops.sum(soft * mask), tokens)
        return terms, tokens

    @classmethod
    def for_run(cls, context, student, loss_weights, temperature=None):
        """The trainer of a run's ``student``: the task's terms, the spec's label smoothing and
        divergence, and the method's ``temperature`` schedule if it has one."""
        return cls(
            student,
            context.task,
            loss_weights=loss_weights,
            label_smoothing=context.spec.train.label_smoothing,
            divergence=Divergence.of(context.spec.distill),
            temperature=temperature,
        )
