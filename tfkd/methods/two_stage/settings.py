"""What a ``two_stage`` run's settings imply, light (no TensorFlow): the pre-training stages'
names, the tasks' pre-training objectives, which pre-training stage a ``distill`` section
trains with, and the teacher's name. The method (:mod:`tfkd.methods.two_stage`, which
re-exports these) and its stages read them; this module imports neither.
"""

from tfkd import registry
from tfkd.tasks.base import Pretrainable

PRETRAIN_MLE, PRETRAIN_KD = "pretrain_mle", "pretrain_kd"
MASKED_LM, CAUSAL_LM, MASKED_SEQ2SEQ = "masked_lm", "causal_lm", "masked_seq2seq"
# objectives whose pre-training and fine-tuning distillation run the teacher on the batch
GENERATIVE = (CAUSAL_LM, MASKED_SEQ2SEQ)


def objective(task):
    """The task's pre-training objective (``None`` when it has none)."""
    return task.pretraining_objective if isinstance(task, Pretrainable) else None


def teacher_label(spec):
    """The teacher as the log and the comparison table name it."""
    if spec.teacher is not None:
        return spec.teacher.checkpoint
    if objective(registry.lookup("task", spec.task)) == MASKED_SEQ2SEQ:
        return "Transformer pre-trained by tfkd with MASS (teacher_pretrain)"
    return "GPT-2 pre-trained by tfkd (teacher_pretrain)"


def pretrain_stage(section):
    """The pre-training stage a ``distill`` section's student starts from, or ``None``."""
    if not section.pretrain.enabled:
        return None
    return PRETRAIN_KD if section.pretrain.kd_lambda > 0 else PRETRAIN_MLE


def uses_teacher_outputs(section):
    return section.finetune.kd_lambda > 0


def run_sections(spec):
    """The ``distill`` sections of the run and of its variants trained by this method."""
    sections = [spec.distill]
    for name in spec.variants or {}:
        resolved = getattr(spec, "_variants", None) or {}
        if name in resolved and resolved[name].method == spec.method:
            sections.append(resolved[name].distill)
    return sections


def kd_pretrain_lambda(spec):
    """The lambda of the run's distilled pre-training (one per run, see
    :meth:`tfkd.methods.two_stage.TwoStageMethod.check_variant`)."""
    return next((s.pretrain.kd_lambda for s in run_sections(spec) if pretrain_stage(s) == PRETRAIN_KD), None)


def pretrain_settings(spec):
    """The pre-training settings (the run's, or its first variant's that pre-trains)."""
    return next(s.pretrain for s in run_sections(spec) if s.pretrain.enabled)


def teacher_test_splits(spec):
    """The splits ``teacher_evaluate`` scores: ``evaluate.splits`` but the validation split,
    which ``teacher_finetune`` scores."""
    return [split for split in spec.evaluate.splits if split != "valid"]


__all__ = [
    "CAUSAL_LM",
    "GENERATIVE",
    "MASKED_LM",
    "MASKED_SEQ2SEQ",
    "PRETRAIN_KD",
    "PRETRAIN_MLE",
    "kd_pretrain_lambda",
    "objective",
    "pretrain_settings",
    "pretrain_stage",
    "run_sections",
    "teacher_label",
    "teacher_test_splits",
    "uses_teacher_outputs",
]
