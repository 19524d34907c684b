"""LightPAFF's fine-tuning distillation (appendix eq. 5): the task's cross-entropy on the
labels plus ``KL(teacher || student)`` over the output distribution, weighted
``{xe: 1 - lambda, kd: lambda}``. Examples without a label (the teacher-labelled sentences,
label -1) add the KL term alone; validation batches carry no teacher column and report the
task's terms."""

from keras import ops

from tfkd.training.losses import kl_divergence
from tfkd.training.trainer import LossTerm, SupervisedTrainer

TEACHER_COLUMN = "teacher_probs"


class FinetuneDistiller(SupervisedTrainer):
    def __init__(self, student, task, label_smoothing=0.0, loss_weights=None, **kwargs):
        super().__init__(student, task, label_smoothing=label_smoothing, loss_weights=loss_weights,
                         reported_terms=("xe", "nll", "kd"), **kwargs)

    def compute_terms(self, data, training):
        inputs, labels = data[0], data[1]
        teacher_probs = inputs.get(TEACHER_COLUMN)
        model_inputs = {k: v for k, v in inputs.items() if k != TEACHER_COLUMN}
        logits, terms, tokens = self.task.supervised_terms(self.student, (model_inputs, labels), training,
                                                           self.label_smoothing)
        if teacher_probs is not None:
            kl = kl_divergence(teacher_probs, logits)
            terms["kd"] = LossTerm(ops.sum(kl), ops.cast(ops.shape(kl)[0], "float32"))
        return terms, tokens
