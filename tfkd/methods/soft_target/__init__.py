"""``distill.method: soft_target``: soft targets from a C-MLM fine-tuned BERT (``cmlm_kd.txt``).

Stages: ``teacher_finetune`` (conditional MLM on the training pairs, :mod:`.stages`) and
``teacher_cache`` (top-K distributions for every target position, sharded on disk,
:mod:`.cache`); the student's trainer (:mod:`.distiller`) optimises
``soft * L_bidi + xe * L_xe`` with the soft targets streamed from the cache by example id.
"""

from typing import Literal

import pydantic
from pydantic import Field, PositiveInt

from tfkd.methods.base import Method, MethodSpec, shared_stage_problems
from tfkd.plan import PlannedStage
from tfkd.registry import register
from tfkd.spec import Strict
from tfkd.tasks.base import AlignedPairs


class CMLMFinetuneSpec(Strict):
    """C-MLM fine-tuning of the teacher (cmlm_kd 3.2)."""

    steps: PositiveInt = 1000
    batch_size: PositiveInt = 32
    learning_rate: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(100, ge=0)
    mask_rate: float = Field(0.15, gt=0, le=1)
    max_length: PositiveInt = 128
    log_every: PositiveInt = 100
    seed: int = 1
    # "left_to_right": the paper's BERT_l2r ablation (each target token from the source and
    # the target before it, no masking); the cache then needs one pass per pair
    direction: Literal["bidirectional", "left_to_right"] = "bidirectional"


class SoftTargetCacheSpec(Strict):
    """Top-K soft targets for every target position, each predicted while masked."""

    top_k: PositiveInt = 8
    temperature: float = Field(1.0, gt=0)
    mask_rate: float = Field(0.15, gt=0, le=1)
    batch_size: PositiveInt = 64
    shard_size: PositiveInt = 10000
    # training reads the cache through a shuffle buffer of this many examples (its memory bound)
    shuffle_buffer: PositiveInt = 10000


class SoftTargetSpec(MethodSpec):
    method: str = "soft_target"
    # weight of the soft-target term; the default loss weights are {soft: alpha, xe: 1 - alpha}
    alpha: float = Field(0.5, ge=0, le=1)
    finetune: CMLMFinetuneSpec = CMLMFinetuneSpec()
    cache: SoftTargetCacheSpec = SoftTargetCacheSpec()

    @pydantic.model_validator(mode="after")
    def _alpha_or_weights(self):
        if self.loss_weights is not None and "alpha" in self.model_fields_set:
            raise ValueError("give alpha or loss_weights, not both (alpha sets {soft: alpha, xe: 1 - alpha})")
        return self


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
        # every student of the run reads the same fine-tuned teacher and cache (the cache's
        # shuffle buffer is how training reads it, not what it holds)
        finetune = [("finetune", k) for k in CMLMFinetuneSpec.model_fields]
        cache = [("cache", k) for k in SoftTargetCacheSpec.model_fields if k != "shuffle_buffer"]
        return shared_stage_problems(context.spec, variant, {"teacher_finetune": finetune, "teacher_cache": cache})

    def decoded_targets_problem(self, context):
        return (
            "soft_target's teacher cache holds distributions for the reference targets' positions, "
            "computed before any teacher translation; train on targets: reference"
        )

    def plan_stages(self, context):
        stages = "tfkd.methods.soft_target.stages"
        return [
            PlannedStage("teacher_finetune", (), f"{stages}:CMLMFinetuneStage"),
            PlannedStage("teacher_cache", ("vocab", "teacher_finetune"), f"{stages}:TeacherCacheStage"),
        ]

    def train_inputs(self, context):
        return ("teacher_cache",)

    def train_config(self, context):
        # the cache's own key covers the teacher; training needs the weights and the buffer
        section = context.spec.distill
        return {"loss_weights": self.loss_weights(section), "cache_shuffle_buffer": section.cache.shuffle_buffer}

    def train_columns(self, context, stage_name):
        import logging

        from tfkd.distillation.topk_cache import read_manifest, stream_cache

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
        return stream_cache(
            directory, expected_ids=ids, seed=spec.train.seed, shuffle_buffer=spec.distill.cache.shuffle_buffer
        )

    def make_trainer(self, context, student):
        from tfkd.methods.soft_target.distiller import SoftTargetDistiller

        spec = context.spec
        return SoftTargetDistiller(
            student,
            context.task,
            loss_weights=self.loss_weights(spec.distill),
            label_smoothing=spec.train.label_smoothing,
        )


register("method", "soft_target")(SoftTargetMethod())

__all__ = ["CMLMFinetuneSpec", "SoftTargetCacheSpec", "SoftTargetMethod", "SoftTargetSpec"]
