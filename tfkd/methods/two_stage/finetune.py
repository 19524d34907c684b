"""LightPAFF's fine-tuning distillation: the task's cross-entropy on the labels plus
``KL(teacher || student)`` over the output distribution, weighted ``{xe: 1 - lambda, kd:
lambda}`` (appendix eqs. 5 and 6).

The teacher's distribution comes either from the batch (column ``teacher_probs``, written once
by ``teacher_predictions``: a classifier's label distribution; examples without a label, the
teacher-labelled sentences with label -1, add the KL term alone) or from a frozen ``teacher``
run on the same batch (a language model's or a seq2seq model's next-token distribution at
every position, the KL summed over the positions with a label, ``task.label_weights``, and
normalised by their count). Validation batches
carry no teacher column, and the online teacher is not run on them: they report the task's
terms. The same trainer is causal-LM pre-training distillation (eq. 3: the same formula on the
pre-training text)."""

from keras import ops

from tfkd.distillation.divergences import Divergence
from tfkd.training.losses import kl_divergence
from tfkd.training.trainer import LossTerm, SupervisedTrainer

TEACHER_COLUMN = "teacher_probs"


class FinetuneDistiller(SupervisedTrainer):
    """Args:
    student, task, label_smoothing, loss_weights: as :class:`SupervisedTrainer`'s.
    teacher: a frozen model with the student's inputs and outputs, run on every training
        batch; ``None`` reads the batch's ``teacher_probs`` column when it has one.
    divergence: the ``kd`` term's :class:`tfkd.distillation.divergences.Divergence` of the
        teacher's and the student's distributions (default: forward KL, the paper's).
    """

    def __init__(self, student, task, label_smoothing=0.0, loss_weights=None, teacher=None, divergence=None, **kwargs):
        super().__init__(
            student,
            task,
            label_smoothing=label_smoothing,
            loss_weights=loss_weights,
            reported_terms=("xe", "nll", "kd"),
            **kwargs,
        )
        self.teacher = teacher
        self.divergence = divergence or Divergence()
        if teacher is not None:
            teacher.trainable = False

    def compute_terms(self, data, training):
        inputs, labels = data[0], data[1]
        teacher_probs = inputs.get(TEACHER_COLUMN)
        model_inputs = {k: v for k, v in inputs.items() if k != TEACHER_COLUMN}
        logits, terms, tokens = self.task.supervised_terms(
            self.student, (model_inputs, labels), training, self.label_smoothing
        )
        if teacher_probs is None and self.teacher is not None and training and "kd" in self.loss_weights:
            teacher_probs = ops.stop_gradient(
                ops.softmax(ops.cast(self.teacher(model_inputs, training=False), "float32"), axis=-1)
            )
        if teacher_probs is not None:
            if self.divergence == Divergence():  # forward KL, as it always was computed here
                kl = kl_divergence(teacher_probs, logits)
            else:
                kl = self.divergence.dense(teacher_probs, logits)
            if len(kl.shape) == 2:  # per position: the positions with a label
                weights = self.task.label_weights(self.student, labels)
                terms["kd"] = LossTerm(ops.sum(kl * weights), ops.sum(weights))
            else:
                terms["kd"] = LossTerm(ops.sum(kl), ops.cast(ops.shape(kl)[0], "float32"))
        return terms, tokens
