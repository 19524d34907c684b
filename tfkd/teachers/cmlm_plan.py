"""Where the C-MLM teacher's stages go in a run's plan, for the methods that read it
(``soft_target``, ``ensemble``). Importing this does not import TensorFlow."""

from tfkd.plan import PlannedStage
from tfkd.teachers.settings import CMLMFinetuneSpec, SoftTargetCacheSpec

FINETUNE_STAGE, CACHE_STAGE = "teacher_finetune", "teacher_cache"


def cmlm_teacher_stages():
    """``teacher_finetune`` and ``teacher_cache`` (:mod:`tfkd.teachers.cmlm_stages`), which
    read ``distill.finetune`` and ``distill.cache``."""
    stages = "tfkd.teachers.cmlm_stages"
    return [
        PlannedStage(FINETUNE_STAGE, (), f"{stages}:CMLMFinetuneStage"),
        PlannedStage(CACHE_STAGE, ("vocab", FINETUNE_STAGE), f"{stages}:TeacherCacheStage"),
    ]


def cmlm_stage_keys():
    """``{stage: [distill key paths keying it]}``: what every student of a run reading the one
    C-MLM teacher shares (:func:`tfkd.methods.base.shared_stage_problems`; the cache's shuffle
    buffer is how training reads it, not what it holds)."""
    return {
        FINETUNE_STAGE: [("finetune", k) for k in CMLMFinetuneSpec.model_fields],
        CACHE_STAGE: [("cache", k) for k in SoftTargetCacheSpec.model_fields if k != "shuffle_buffer"],
    }


__all__ = ["CACHE_STAGE", "FINETUNE_STAGE", "cmlm_stage_keys", "cmlm_teacher_stages"]
