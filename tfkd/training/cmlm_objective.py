"""The conditional masked-LM objective of a parallel (Mask-Predict) student, as the methods
that train one declare it (``cmlm``, ``adapters``): the spec settings and the method hooks they
share. Importing this imports no TensorFlow (methods import it when the registry loads); the
training columns and the ``train_step`` are in :mod:`tfkd.training.cmlm`."""

from typing import ClassVar, Literal

from pydantic import Field

from tfkd import registry
from tfkd.spec import Strict


class CMLMObjectiveSettings(Strict):
    """Mixed into a method's section before ``MethodSpec`` (``class S(CMLMObjectiveSettings,
    MethodSpec)``)."""

    # weight of the target-length loss beside the conditional MLM loss (default loss weights:
    # {cmlm: 1, length: length_weight})
    length_weight: float = Field(0.1, ge=0)
    # what the length term is divided by: sentences (its mean per sentence) or masked_tokens
    # (the cmlm term's masked target tokens: fairseq's Mask-Predict criterion, which AB-Net's
    # released code trains with at length_weight 1); tfkd.training.cmlm.CMLMTrainer
    length_normaliser: Literal["sentences", "masked_tokens"] = "sentences"

    # left out of dumps at its default, so that the keys of earlier runs' stages stay
    omitted_when_default: ClassVar[tuple] = ("length_normaliser",)


def decodes_in_parallel(spec):
    """Whether the spec's student predicts every target token at once (Mask-Predict)."""
    from tfkd.models.abilities import ParallelDecoding

    return issubclass(registry.lookup("student", spec.student.kind), ParallelDecoding)


class CMLMObjective:
    """Method hooks (mixed in before ``Method``): a parallel student's batches carry their
    masks, and :meth:`cmlm_trainer` trains it with the section's weights."""

    def default_loss_weights(self, section):
        return {"cmlm": 1.0, "length": section.length_weight}

    def map_train_batches(self, context, dataset):
        if not decodes_in_parallel(context.spec):
            return dataset
        from tfkd.training.cmlm import with_cmlm_targets

        return with_cmlm_targets(dataset, context.spec.train.seed, context.tokenizers().target)

    def cmlm_trainer(self, context, student, trainer_class=None):
        """The conditional-MLM trainer of ``student`` (``trainer_class``, default
        :class:`~tfkd.training.cmlm.CMLMTrainer`) with the section's loss weights."""
        from tfkd import data as data_lib
        from tfkd.training.cmlm import CMLMTrainer

        spec = context.spec
        weights = self.loss_weights(spec.distill)
        target = context.tokenizers().target
        return (trainer_class or CMLMTrainer)(
            student,
            {k: weights[k] for k in ("cmlm", "length") if k in weights},
            data_lib.SpecialIds.of(target),
            target.token_to_id(data_lib.MASK),
            label_smoothing=spec.train.label_smoothing,
            length_normaliser=spec.distill.length_normaliser,
        )
