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
0.1): the ``conditional_mlm`` method's objective (:mod:`tfkd.methods.conditional_mlm`), on a student with adapters;
an autoregressive (``abnet_enc``) student is trained by maximum likelihood. The method
adds no stage and no teacher: the pretrained models are part of the student, and the run's
comparison models (a Transformer trained from scratch, AB-Net-Enc) are its ``variants``.
"""

from tfkd import registry
from tfkd.errors import MethodError
from tfkd.methods.base import Method, MethodSpec
from tfkd.tasks.base import AlignedPairs
from tfkd.training.cmlm_objective import CMLMObjective, CMLMObjectiveSettings, decodes_in_parallel


class AdaptersSpec(CMLMObjectiveSettings, MethodSpec):
    method: str = "adapters"
    # length_weight and length_normaliser: a parallel student's objective (the conditional_mlm method's);
    # an autoregressive student's default loss weights are {xe: 1}


class AdaptersMethod(CMLMObjective, Method):
    name = "adapters"
    spec_schema = AdaptersSpec
    loss_terms = ("cmlm", "length", "xe")
    compares_with_baseline = False  # the supervised method cannot train an AB-Net; variants compare
    requires = (AlignedPairs,)

    def default_loss_weights(self, section):
        return {**super().default_loss_weights(section), "xe": 1.0}

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

    def make_trainer(self, context, student):
        from tfkd.methods.adapters.trainer import AdapterCMLMTrainer
        from tfkd.models.abilities import AdapterStudent
        from tfkd.training.trainer import SupervisedTrainer

        spec, task = context.spec, context.task
        if not isinstance(student, AdapterStudent):
            raise MethodError(
                f"train: method adapters trains a student built with adapters (student.kind abnet, "
                f"abnet_enc or abnet_enc_parallel, or one of yours that is a tfkd.models.AdapterStudent); "
                f"{spec.student.kind} is not"
            )
        if decodes_in_parallel(spec):
            return self.cmlm_trainer(context, student, AdapterCMLMTrainer)
        weights = self.loss_weights(spec.distill)
        return SupervisedTrainer(
            student, task, label_smoothing=spec.train.label_smoothing, loss_weights={"xe": weights.get("xe", 1.0)}
        )


registry.register("method", "adapters")(AdaptersMethod())

__all__ = ["AdaptersMethod", "AdaptersSpec"]
