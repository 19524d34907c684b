"""``distill.method: ensemble``: token-level distillation from several teachers at once
(Freitag et al. 2017, "Ensemble Distillation for Neural Machine Translation"; the multi-teacher
distiller of TextBrewer).

Each entry of ``distill.teachers`` is a source of token-level soft targets over the student's
target vocabulary, cached once as a top-K teacher cache (:mod:`tfkd.teachers.topk_cache`):

- ``cmlm``: the C-MLM fine-tuned BERT that ``soft_target`` distils (``cmlm_kd.txt``), its
  stages (:mod:`tfkd.teachers.cmlm_stages`) ``teacher_finetune`` and ``teacher_cache``
  read ``distill.finetune`` and ``distill.cache``
  (its temperature and K are ``distill.cache``'s);
- the name of a train stage of the run that runs before the student (``baseline``, or a
  variant such as a wider Transformer): its student, teacher-forced on the training pairs
  (stage ``teacher_cache_<stage>``, :mod:`.stages`), at the entry's ``temperature`` and
  ``top_k``.

Each cache stage is keyed by its own teacher alone, so adding a teacher reuses the others'
caches. A student with several teachers reads ``<student>_soft_targets``, their combination
written in the same cache format (:mod:`.combine`): by default the weighted **mixture** of the
teachers' distributions, ``sum_i w_i q_i`` (what fairseq's ensemble decoding averages, and what
Freitag et al. distil: every teacher's alternatives keep their mass); ``combine: product``
takes the normalised weighted product ``prod_i q_i^w_i`` (a product of experts: only what every
teacher finds likely keeps mass). The student's trainer is the soft-target one
(:mod:`tfkd.distillation.soft_target_distiller`): ``alpha * L_soft + (1 - alpha) * L_xe``.
"""

from typing import Literal

import pydantic
from pydantic import Field, PositiveInt

from tfkd.distillation.settings import DivergenceSettings, alpha_or_weights
from tfkd.methods.base import Method, MethodSpec, shared_stage_problems
from tfkd.methods.ensemble.plan import CMLM
from tfkd.registry import register
from tfkd.spec import Strict
from tfkd.tasks.base import AlignedPairs
from tfkd.teachers.cmlm_plan import cmlm_stage_keys, cmlm_teacher_stages
from tfkd.teachers.settings import CMLMFinetuneSpec, SoftTargetCacheSpec


class EnsembleTeacherSpec(Strict):
    """One teacher of the ensemble."""

    # cmlm, a train stage of the run, or an exported model version folder's path (default: the
    # entry's name)
    source: str | None = None
    # its share of the combination (the weights are normalised over the teachers)
    weight: float = Field(1.0, gt=0)
    # a student teacher's soft targets: softmax(logits / temperature), its top K renormalised
    # (the cmlm teacher's are distill.cache.temperature and top_k)
    temperature: float | None = Field(None, gt=0)
    top_k: PositiveInt | None = None
    batch_size: PositiveInt = 64  # pairs per teacher forward pass when caching


class EnsembleSpec(DivergenceSettings, MethodSpec):
    """The teachers, how they combine, the soft term's weight, and the cmlm teacher's
    fine-tuning and cache (``soft_target``'s settings)."""

    method: str = "ensemble"
    teachers: dict[str, EnsembleTeacherSpec] = Field(..., min_length=1)
    combine: Literal["mixture", "product"] = "mixture"
    # weight of the soft term; the default loss weights are {soft: alpha, xe: 1 - alpha}
    alpha: float = Field(0.5, ge=0, le=1)
    finetune: CMLMFinetuneSpec = CMLMFinetuneSpec()
    cache: SoftTargetCacheSpec = SoftTargetCacheSpec()
    # a combined cache's examples a shard
    shard_size: PositiveInt = 10000

    _alpha_or_weights = pydantic.model_validator(mode="after")(alpha_or_weights)

    def sources(self):
        """``{teacher name: its source}``."""
        return {name: teacher.source or name for name, teacher in self.teachers.items()}

    def uses_cmlm(self):
        return CMLM in self.sources().values()

    def normalised_weights(self):
        total = sum(t.weight for t in self.teachers.values())
        return {name: t.weight / total for name, t in self.teachers.items()}


class EnsembleMethod(Method):
    """Token-level KD from several teachers (see the module); the C-MLM teacher's stages only
    when a student names ``cmlm``."""

    name = "ensemble"
    spec_schema = EnsembleSpec
    loss_terms = ("soft", "xe")
    requires = (AlignedPairs,)

    def default_loss_weights(self, section):
        return {"soft": section.alpha, "xe": 1.0 - section.alpha}

    def check(self, context):
        spec = context.spec
        problems = super().check(context)
        if spec.distill.tail:
            problems.append(
                (("distill", "tail"), "the teachers' combined cache keeps no tail mass (soft_target's does)")
            )
        for name, teacher in spec.distill.teachers.items():
            where = ("distill", "teachers", name)
            source = teacher.source or name
            if source == CMLM:
                for key in ("temperature", "top_k"):
                    if getattr(teacher, key) is not None:
                        problems.append(
                            ((*where, key), f"the cmlm teacher's {key} is distill.cache.{key} (its cache's)")
                        )
                if spec.teacher is None:
                    problems.append((where, "the cmlm teacher needs a teacher section (teacher.checkpoint)"))
                tokenizer = getattr(spec.data, "target_tokenizer", None)
                if tokenizer is not None and tokenizer.kind != "teacher":
                    problems.append(
                        (
                            ("data", "target_tokenizer", "kind"),
                            "the cmlm teacher's vocabulary is not the student's: its soft targets are over the "
                            'teacher\'s WordPiece, so the student must predict it (kind: "teacher")',
                        )
                    )
        return problems

    def check_variant(self, context, variant):
        # every student of the run reads the one C-MLM teacher and its cache
        if not variant.distill.uses_cmlm():
            return []
        return shared_stage_problems(context.spec, variant, cmlm_stage_keys())

    def decoded_targets_problem(self, context):
        return (
            "the teachers' caches hold distributions for the reference targets' positions; train on targets: reference"
        )

    def plan_stages(self, context):
        if not any(own.distill.uses_cmlm() for own in context.method_specs()):
            return []
        return cmlm_teacher_stages()

    def extend_plan(self, context, plan):
        from tfkd.methods.ensemble.plan import extend_plan

        extend_plan(self, context, plan)

    def check_plan(self, context, plan):
        from tfkd.methods.ensemble.plan import check_plan

        return check_plan(self, context, plan)

    def train_config(self, context):
        # the teachers key the caches the student reads (their keys are upstream of its own)
        section = context.spec.distill
        return {
            "loss_weights": self.loss_weights(section),
            "cache_shuffle_buffer": section.cache.shuffle_buffer,
            **section.divergence_key(),
        }

    def train_columns(self, context, stage_name):
        import logging

        from tfkd.methods.ensemble.plan import soft_targets_stage
        from tfkd.plan import seed_of_stage
        from tfkd.teachers.topk_cache import read_manifest, stream_cache

        spec = context.spec
        directory = context.runner.stage_dir(soft_targets_stage(seed_of_stage(stage_name)[0], spec.distill))
        ids = context.task.example_ids(context, "train", stage_name)
        manifest = read_manifest(directory)
        logging.getLogger("tfkd").info(
            "%s: soft targets of %d teacher(s) for %d examples streamed from %s (%d entries a position)",
            stage_name,
            len(spec.distill.teachers),
            len(ids),
            directory,
            manifest["top_k"],
        )
        return stream_cache(
            directory, expected_ids=ids, seed=spec.train.seed, shuffle_buffer=spec.distill.cache.shuffle_buffer
        )

    def make_trainer(self, context, student):
        from tfkd.distillation.soft_target_distiller import SoftTargetDistiller

        return SoftTargetDistiller.for_run(context, student, self.loss_weights(context.spec.distill))


register("method", "ensemble")(EnsembleMethod())

__all__ = ["CMLM", "EnsembleMethod", "EnsembleSpec", "EnsembleTeacherSpec"]
