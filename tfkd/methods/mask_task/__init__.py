"""``distill.method: mask_task`` and ``hidden_state``: distilling a BERT teacher into the NMT
encoder (``masktask_kd.txt``).

Both methods train the translation student on ``L_nmt + alpha * L_kd``; the student's encoder
reads the teacher's tokenization (``data.source_tokenizer.kind: teacher``), so its positions
are the teacher's.

- ``mask_task`` (section 3.2): each batch carries the clean source X (NMT) and a masked copy
  X' (BERT 80/10/10 token masking or SpanBERT spans, ``masking``; :mod:`tfkd.masking`); an MLM
  head on the student encoder (tied to its source embedding) predicts the masked positions of
  X', and ``L_kd`` is the cross-entropy against the teacher's MLM distribution on the same X'
  (eq. 3), over the student's source vocabulary (``kd_input: clean``: both read X at the same
  positions, Table 2's ablation). The teacher runs online, frozen, on the same batch. The
  offline MiniLM has no MLM head, so the ``teacher_mlm`` stage trains one first (skipped when
  the checkpoint brings one).
- ``hidden_state`` (the paper's comparison, Yang et al. 2020): ``L_kd`` is the MSE between a
  teacher layer's hidden states and the student encoder's output through a learned
  projection, on X (``hidden_input: clean``) or on X' (``masked``, Table 2's ablation).

``gate: layer`` (or ``variable``) is the gradient optimisation mechanism (GOM, section 3.3,
eqs. 5-6): per encoder module, the KD gradient is added to the NMT gradient only where their
inner product is positive (:mod:`.distiller`).
"""

from typing import Literal

import pydantic
from pydantic import Field

from tfkd.distillation.settings import ScheduledDivergenceSettings
from tfkd.methods.base import Method, MethodSpec, shared_stage_problems
from tfkd.plan import PlannedStage
from tfkd.registry import register
from tfkd.tasks.base import AlignedPairs
from tfkd.teachers.mlm_plan import MLM_CACHE_STAGE, MLM_STAGE
from tfkd.teachers.settings import TeacherMLMSpec, TopKCacheSpec, check_cache_use


class EncoderKDSpec(MethodSpec):
    """What ``mask_task`` and ``hidden_state`` share."""

    # weight of L_kd (eq. 4); the default loss weights are {xe: 1, kd: alpha}
    alpha: float = Field(0.5, ge=0)
    # how X' is masked: BERT's 15% with 80/10/10, or SpanBERT's geometric spans
    masking: Literal["token", "span"] = "token"
    mask_rate: float = Field(0.15, gt=0, lt=1)
    # GOM granularity: none (plain sum), layer (per encoder module), variable (per weight)
    gate: Literal["none", "layer", "variable"] = "none"


# the teacher_mlm_cache stage's settings (shared with LightPAFF's pre-training cache)
MaskTaskCacheSpec = TopKCacheSpec


class MaskTaskSpec(ScheduledDivergenceSettings, EncoderKDSpec):
    """``divergence`` compares the teacher's MLM distribution on X' (restricted to the
    student's source vocabulary; its top K with a cache, and with ``tail`` the mass outside
    them as one more outcome) with the student's MLM head's (forward KL: eq. 3's soft
    cross-entropy). ``temperature_schedule`` puts the teacher's distribution at a temperature
    over the student's steps: its logits divided by it online, its cached top K re-tempered
    from ``cache.temperature``."""

    method: str = "mask_task"
    teacher_mlm: TeacherMLMSpec = TeacherMLMSpec()
    # where q(.|X') comes from: the frozen teacher on the same batch (a new X' every epoch), or
    # a top-K cache of it for one fixed X' per example (the teacher_mlm_cache stage)
    teacher: Literal["online", "cache"] = "online"
    cache: MaskTaskCacheSpec = MaskTaskCacheSpec()
    # what both models read for L_kd at the chosen positions: X' (the method) or the original X
    # (Table 2's "KD on Mask Task, orign" row)
    kd_input: Literal["masked", "clean"] = "masked"

    @pydantic.model_validator(mode="after")
    def _cache_needs_teacher_cache(self):
        if self.tail and self.teacher != "cache":
            raise ValueError("tail applies to teacher: cache (the online teacher's whole distribution has no tail)")
        return check_cache_use(self)

    @pydantic.model_validator(mode="after")
    def _clean_input_reads_the_teacher_online(self):
        if self.kd_input == "clean" and self.teacher == "cache":
            raise ValueError("kd_input: clean needs teacher: online (the teacher cache holds q(.|X') on X')")
        return self


class HiddenStateSpec(EncoderKDSpec):
    method: str = "hidden_state"
    # the teacher layer distilled (0-based; negative counts from the top)
    teacher_layer: int = -1
    # the input both models read for L_kd: X, or X' (the paper's Table 2 ablation)
    hidden_input: Literal["clean", "masked"] = "clean"

    @pydantic.model_validator(mode="after")
    def _masking_needs_masked_input(self):
        if self.hidden_input == "clean" and {"masking", "mask_rate"} & self.model_fields_set:
            raise ValueError("masking and mask_rate apply to hidden_input: masked only")
        return self


class EncoderKDMethod(Method):
    loss_terms = ("xe", "kd")

    def default_loss_weights(self, section):
        return {"xe": 1.0, "kd": section.alpha}

    requires = (AlignedPairs,)

    def check(self, context):
        spec = context.spec
        problems = super().check(context)
        if spec.teacher is None:
            problems.append((("distill", "method"), f"{self.name} needs a teacher section (teacher.checkpoint)"))
        if problems and not isinstance(context.task, AlignedPairs):
            return problems
        tokenizer = getattr(spec.data, "source_tokenizer", None)
        if tokenizer is not None and tokenizer.kind != "teacher":
            problems.append(
                (
                    ("data", "source_tokenizer", "kind"),
                    f'{self.name} needs "teacher" (the student encoder reads the teacher\'s tokens)',
                )
            )
        if spec.data.shared_vocab:
            problems.append(
                (
                    ("data", "shared_vocab"),
                    f"{self.name} needs the teacher's source vocabulary, not one shared with the target",
                )
            )
        return problems

    def train_config(self, context):
        # the teacher_mlm stage's own key covers its settings
        spec = context.spec
        return {
            "distill": spec.distill.model_dump(mode="json", exclude={"teacher_mlm"}),
            "loss_weights": self.loss_weights(spec.distill),
            "teacher": spec.teacher.checkpoint,
        }

    def map_train_batches(self, context, dataset):
        from tfkd.methods.mask_task.batches import with_masked_source

        return with_masked_source(dataset, context.spec, context.tokenizers().source)


class MaskTaskMethod(EncoderKDMethod):
    name = "mask_task"
    spec_schema = MaskTaskSpec

    def plan_stages(self, context):
        stages = [PlannedStage(MLM_STAGE, (), "tfkd.methods.mask_task.teacher_mlm:MaskTaskTeacherMLMStage")]
        if any(spec.distill.teacher == "cache" for spec in context.method_specs()):
            stages.append(
                PlannedStage(
                    MLM_CACHE_STAGE, ("vocab", MLM_STAGE), "tfkd.methods.mask_task.teacher_cache:MaskTaskCacheStage"
                )
            )
        return stages

    def check_variant(self, context, variant):
        # the teacher's MLM head is trained on X' masked as the run masks it, and the cache
        # holds X' and the teacher's distributions (its shuffle buffer is how training reads it)
        head = [("teacher_mlm", k) for k in TeacherMLMSpec.model_fields]
        stages = {MLM_STAGE: [*head, ("masking",), ("mask_rate",)]}
        if "cache" in (context.spec.distill.teacher, variant.distill.teacher):
            stages[MLM_CACHE_STAGE] = [("cache", k) for k in MaskTaskCacheSpec.model_fields if k != "shuffle_buffer"]
        return shared_stage_problems(context.spec, variant, stages)

    def decoded_targets_problem(self, context):
        if context.spec.distill.teacher == "cache":
            return (
                "the teacher cache holds the examples kept with their references, written before any "
                "teacher translation; use distill.teacher: online with targets: teacher_beam"
            )
        return None

    def train_inputs(self, context):
        return (MLM_CACHE_STAGE,) if context.spec.distill.teacher == "cache" else (MLM_STAGE,)

    def train_config(self, context):
        spec = context.spec
        config = super().train_config(context)
        if spec.distill.teacher == "cache":  # the cache's own key covers the teacher and the masks
            config = {
                "loss_weights": config["loss_weights"],
                "gate": spec.distill.gate,
                "shuffle_buffer": spec.distill.cache.shuffle_buffer,
                **spec.distill.divergence_key(),
            }
        return config

    def train_columns(self, context, stage_name):
        from tfkd.methods.mask_task.teacher_cache import cached_columns

        spec = context.spec
        return cached_columns(context, spec, stage_name) if spec.distill.teacher == "cache" else None

    def map_train_batches(self, context, dataset):
        # cached batches carry their (fixed) X' already
        return dataset if context.spec.distill.teacher == "cache" else super().map_train_batches(context, dataset)

    def make_trainer(self, context, student):
        from tfkd.distillation.divergences import Divergence
        from tfkd.distillation.temperature import TemperatureSchedule
        from tfkd.methods.mask_task.distiller import MaskTaskDistiller
        from tfkd.teachers.mlm_head import load_trained_teacher

        spec, task = context.spec, context.task
        online = spec.distill.teacher == "online"  # else the batches carry the teacher's top-K
        return MaskTaskDistiller(
            student,
            task,
            load_trained_teacher(context) if online else None,
            context.tokenizers().source,
            teacher_tokenizer(spec),
            loss_weights=self.loss_weights(spec.distill),
            label_smoothing=spec.train.label_smoothing,
            gate=spec.distill.gate,
            kd_input=spec.distill.kd_input,
            divergence=Divergence.of(spec.distill),
            temperature=TemperatureSchedule.of(spec.distill, spec.train.steps, spec.distill.cache.temperature),
        )


class HiddenStateMethod(EncoderKDMethod):
    name = "hidden_state"
    spec_schema = HiddenStateSpec

    def map_train_batches(self, context, dataset):
        masked = context.spec.distill.hidden_input == "masked"
        return super().map_train_batches(context, dataset) if masked else dataset

    def make_trainer(self, context, student):
        from tfkd.methods.mask_task.distiller import HiddenStateDistiller
        from tfkd.teachers.checkpoints import load_backbone

        spec, task = context.spec, context.task

        return HiddenStateDistiller(
            student,
            task,
            load_backbone(spec.teacher.checkpoint),
            context.tokenizers().source,
            teacher_tokenizer(spec),
            teacher_layer=spec.distill.teacher_layer,
            hidden_input=spec.distill.hidden_input,
            loss_weights=self.loss_weights(spec.distill),
            label_smoothing=spec.train.label_smoothing,
            gate=spec.distill.gate,
        )


def teacher_tokenizer(spec):
    from tfkd.teachers.checkpoints import teacher_tokenizer as load

    return load(spec.teacher.checkpoint)


register("method", "mask_task")(MaskTaskMethod())
register("method", "hidden_state")(HiddenStateMethod())

__all__ = [
    "HiddenStateMethod",
    "HiddenStateSpec",
    "MaskTaskCacheSpec",
    "MaskTaskMethod",
    "MaskTaskSpec",
    "TeacherMLMSpec",
]
