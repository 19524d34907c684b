"""``distill.method: soft_target``: soft targets from a C-MLM fine-tuned BERT (``cmlm_kd.txt``).

Stages: ``teacher_finetune`` (conditional MLM on the training pairs) and ``teacher_cache``
(top-K distributions for every target position, sharded on disk), both
:mod:`tfkd.teachers.cmlm_stages`, shared with the ensemble method; the student's trainer
(:mod:`tfkd.distillation.soft_target_distiller`) optimises ``soft * L_bidi + xe * L_xe`` with
the soft targets streamed from the cache by example id.
"""

import pydantic
from pydantic import Field

from tfkd.distillation.settings import ScheduledDivergenceSettings, alpha_or_weights
from tfkd.methods.base import Method, MethodSpec, shared_stage_problems
from tfkd.registry import register
from tfkd.tasks.base import AlignedPairs
from tfkd.teachers.cmlm_plan import cmlm_stage_keys, cmlm_teacher_stages
from tfkd.teachers.settings import CMLMFinetuneSpec, SoftTargetCacheSpec


class SoftTargetSpec(ScheduledDivergenceSettings, MethodSpec):
    method: str = "soft_target"
    # weight of the soft-target term; the default loss weights are {soft: alpha, xe: 1 - alpha}
    alpha: float = Field(0.5, ge=0, le=1)
    finetune: CMLMFinetuneSpec = CMLMFinetuneSpec()
    cache: SoftTargetCacheSpec = SoftTargetCacheSpec()

    _alpha_or_weights = pydantic.model_validator(mode="after")(alpha_or_weights)


class SoftTargetMethod(Method):
    name = "soft_target"
    spec_schema = SoftTargetSpec
    loss_terms = ("soft", "xe")
    requires = (AlignedPairs,)

    def default_loss_weights(self, section):
        return {"soft": section.alpha, "xe": 1.0 - section.alpha}

    def check(self, context):
        spec = context.spec
        problems = super().check(context)
        if spec.teacher is None:
            problems.append((("distill", "method"), "soft_target needs a teacher section (teacher.checkpoint)"))
        tokenizer = getattr(spec.data, "target_tokenizer", None)
        if tokenizer is not None and tokenizer.kind != "teacher":
            problems.append(
                (
                    ("data", "target_tokenizer", "kind"),
                    'soft_target needs "teacher" (the student predicts the teacher\'s vocabulary)',
                )
            )
        return problems

    def check_variant(self, context, variant):
        # every student of the run reads the same fine-tuned teacher and cache
        return shared_stage_problems(context.spec, variant, cmlm_stage_keys())

    def decoded_targets_problem(self, context):
        return (
            "soft_target's teacher cache holds distributions for the reference targets' positions, "
            "computed before any teacher translation; train on targets: reference"
        )

    def plan_stages(self, context):
        return cmlm_teacher_stages()

    def train_inputs(self, context):
        return ("teacher_cache",)

    def train_config(self, context):
        # the cache's own key covers the teacher; training needs the weights and the buffer
        section = context.spec.distill
        return {
            "loss_weights": self.loss_weights(section),
            "cache_shuffle_buffer": section.cache.shuffle_buffer,
            **section.divergence_key(),  # the divergence and a temperature schedule, where set
        }

    def train_columns(self, context, stage_name):
        import logging

        from tfkd.teachers.topk_cache import read_manifest, stream_cache

        spec = context.spec
        directory = context.runner.stage_dir("teacher_cache")
        ids = context.task.example_ids(context, "train", stage_name)
        manifest = read_manifest(directory)
        logging.getLogger("tfkd").info(
            "%s: soft targets for %d examples streamed from the cache (K=%d, T=%g, %d shards, shuffle buffer %d)",
            stage_name,
            len(ids),
            manifest["top_k"],
            manifest["temperature"],
            len(manifest["shards"]),
            spec.distill.cache.shuffle_buffer,
        )
        schedule = spec.distill.temperature_schedule
        if schedule is not None:
            logging.getLogger("tfkd").info(
                "%s: the soft targets re-tempered from the cache's T=%g: %s",
                stage_name,
                manifest["temperature"],
                f"T={schedule.start:g} throughout"
                if schedule.kind == "constant"
                else f"{schedule.kind} from T={schedule.start:g} to T={schedule.end:g} over {spec.train.steps} steps",
            )
        if spec.distill.tail and not manifest.get("tail"):
            logging.getLogger("tfkd").warning(
                "%s: distill.tail: the teacher cache %s keeps no tail mass (an older tfkd wrote it): its K "
                "probabilities are renormalised instead; delete that folder and run again to rewrite it with the tail",
                stage_name,
                directory,
            )
        return stream_cache(
            directory, expected_ids=ids, seed=spec.train.seed, shuffle_buffer=spec.distill.cache.shuffle_buffer
        )

    def make_trainer(self, context, student):
        from tfkd.distillation.soft_target_distiller import SoftTargetDistiller
        from tfkd.distillation.temperature import TemperatureSchedule

        distill = context.spec.distill
        # over the student's steps, from the temperature the cache was written at
        schedule = TemperatureSchedule.of(distill, context.spec.train.steps, distill.cache.temperature)
        return SoftTargetDistiller.for_run(context, student, self.loss_weights(distill), temperature=schedule)


register("method", "soft_target")(SoftTargetMethod())

__all__ = ["SoftTargetMethod", "SoftTargetSpec"]
