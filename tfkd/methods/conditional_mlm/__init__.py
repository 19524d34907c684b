"""``distill.method: conditional_mlm``: a parallel (Mask-Predict) student trained from the references by
the conditional masked LM and the target-length loss (Ghazvininejad et al. 2019, "Mask-Predict:
Parallel Decoding of Conditional Masked Language Models"): the CMLM Transformer AB-Net's Table 1
compares with (abnet.txt), with no teacher and no pretrained model.

Each training target gets ``k ~ U{1..|y|}`` of its tokens replaced by ``[MASK]``; the loss is
the label-smoothed cross-entropy of the masked tokens plus ``length_weight`` times the
cross-entropy of the target length predicted at the ``[LENGTH]`` position
(:class:`tfkd.training.cmlm.CMLMTrainer`). The student is any one that decodes in parallel
(:class:`tfkd.models.abilities.ParallelDecoding`: ``cmlm_transformer``, ``abnet``,
``abnet_enc_parallel``, yours); Mask-Predict decodes it (``decode.algorithm: mask_predict``).
The ``adapters`` method is this objective on a student built with adapters.
"""

from tfkd import registry
from tfkd.errors import MethodError
from tfkd.methods.base import Method, MethodSpec
from tfkd.tasks.base import AlignedPairs
from tfkd.training.cmlm_objective import CMLMObjective, CMLMObjectiveSettings, decodes_in_parallel


class CMLMSpec(CMLMObjectiveSettings, MethodSpec):
    method: str = "conditional_mlm"


class CMLMMethod(CMLMObjective, Method):
    name = "conditional_mlm"
    spec_schema = CMLMSpec
    loss_terms = ("cmlm", "length")
    compares_with_baseline = False  # the supervised method cannot train a parallel student
    requires = (AlignedPairs,)

    def check(self, context):
        problems = super().check(context)
        if not decodes_in_parallel(context.spec):
            problems.append(
                (
                    ("student", "kind"),
                    f"method {self.name} trains a student that decodes in parallel (a "
                    f"tfkd.models.ParallelDecoding, such as cmlm_transformer); {context.spec.student.kind} is not",
                )
            )
        return problems

    def make_trainer(self, context, student):
        from tfkd.models.abilities import ParallelDecoding

        if not isinstance(student, ParallelDecoding):
            raise MethodError(
                f"train: method {self.name} trains a student that decodes in parallel; "
                f"{type(student).__name__} is not a tfkd.models.ParallelDecoding"
            )
        return self.cmlm_trainer(context, student)


registry.register("method", "conditional_mlm")(CMLMMethod())

__all__ = ["CMLMMethod", "CMLMSpec"]
