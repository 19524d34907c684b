"""``distill.method: adapters``: AB-Net's adapter-only fine-tuning of frozen pretrained BERTs
(``abnet.txt``).

The student is built from pretrained checkpoints with adapters interleaved (``student.kind:
abnet``: a source BERT encoder with bottleneck adapters and a target BERT decoder with
cross-attention adapters, decoded by Mask-Predict; ``abnet_enc``: the source BERT with
adapters and an autoregressive Transformer decoder, decoded by beam search; see
:mod:`tfkd.models.abnet`). The BERT weights are frozen unless ``student.adapters.train: all``
(the paper's full fine-tuning ablation), so what trains is the adapters, the ``[LENGTH]``
predictor and the untied parts of the output head (and an ``abnet_enc`` decoder).

The objective of a parallel (``abnet``) student is the conditional MLM over the target with
the number of masked tokens drawn uniformly from ``1..|y|`` (eq. 3), plus the target-length
loss of the ``[LENGTH]`` position (section 3.3), weighted ``length_weight`` (Mask-Predict's
0.1); an autoregressive (``abnet_enc``) student is trained by maximum likelihood. The method
adds no stage and no teacher: the pretrained models are part of the student, and the run's
comparison models (a Transformer trained from scratch, AB-Net-Enc) are its ``variants``.
"""

from typing import ClassVar, Literal

from pydantic import Field

from tfkd import registry
from tfkd.errors import MethodError
from tfkd.methods.base import Method, MethodSpec
from tfkd.tasks.base import AlignedPairs


class AdaptersSpec(MethodSpec):
    method: str = "adapters"
    # weight of the target-length loss beside the conditional MLM loss (default loss weights:
    # {cmlm: 1, length: length_weight}; an autoregressive student's: {xe: 1})
    length_weight: float = Field(0.1, ge=0)
    # what the length term is divided by: sentences (its mean per sentence) or masked_tokens
    # (the cmlm term's masked target tokens: fairseq's Mask-Predict criterion, which AB-Net's
    # released code trains with at length_weight 1); tfkd.methods.adapters.trainer
    length_normaliser: Literal["sentences", "masked_tokens"] = "sentences"

    # left out of dumps at its default, so that the keys of earlier runs' stages stay
    omitted_when_default: ClassVar[tuple] = ("length_normaliser",)


class AdaptersMethod(Method):
    name = "adapters"
    spec_schema = AdaptersSpec
    loss_terms = ("cmlm", "length", "xe")
    compares_with_baseline = False  # the supervised method cannot train an AB-Net; variants compare
    requires = (AlignedPairs,)

    def default_loss_weights(self, section):
        return {"cmlm": 1.0, "length": section.length_weight, "xe": 1.0}

    def check(self, context):
        spec = context.spec
        problems = super().check(context)
        if not isinstance(context.task, AlignedPairs):
            return problems
        # the student reads the pretrained models' own token ids
        for side, key in (("source", "source_bert"), ("target", "target_bert")):
            checkpoint = spec.student.kwargs.get(key)
            tokenizer = getattr(spec.data, f"{side}_tokenizer", None)
            if checkpoint is None or tokenizer is None:
                continue
            if tokenizer.kind != "pretrained" or tokenizer.checkpoint != checkpoint:
                problems.append(
                    (
                        (("data", f"{side}_tokenizer")),
                        f"expected {{kind: pretrained, checkpoint: {checkpoint}}}: the student's "
                        f"{key} reads its own vocabulary",
                    )
                )
        return problems

    @staticmethod
    def _parallel(spec):
        """Whether the spec's student predicts every target token at once (Mask-Predict)."""
        from tfkd.models.abilities import ParallelDecoding

        return issubclass(registry.lookup("student", spec.student.kind), ParallelDecoding)

    def map_train_batches(self, context, dataset):
        spec = context.spec
        if not self._parallel(spec):
            return dataset
        from tfkd.methods.adapters.batches import with_cmlm_targets

        return with_cmlm_targets(dataset, spec.train.seed, context.tokenizers().target)

    def make_trainer(self, context, student):
        from tfkd.methods.adapters.trainer import AdapterCMLMTrainer
        from tfkd.models.abilities import AdapterStudent
        from tfkd.training.trainer import SupervisedTrainer

        spec, task = context.spec, context.task
        if not isinstance(student, AdapterStudent):
            raise MethodError(
                f"train: method adapters trains a student built with adapters (student.kind abnet "
                f"or abnet_enc, or one of yours that is a tfkd.models.AdapterStudent); {spec.student.kind} is not"
            )
        from tfkd import data as data_lib

        weights = self.loss_weights(spec.distill)
        if self._parallel(spec):
            target = context.tokenizers().target
            return AdapterCMLMTrainer(
                student,
                {k: weights[k] for k in ("cmlm", "length") if k in weights},
                data_lib.SpecialIds.of(target),
                target.token_to_id(data_lib.MASK),
                label_smoothing=spec.train.label_smoothing,
                length_normaliser=spec.distill.length_normaliser,
            )
        return SupervisedTrainer(
            student, task, label_smoothing=spec.train.label_smoothing, loss_weights={"xe": weights.get("xe", 1.0)}
        )


registry.register("method", "adapters")(AdaptersMethod())

__all__ = ["AdaptersMethod", "AdaptersSpec"]
