"""``distill.method: two_stage``: LightPAFF (``lightpaff.txt``), distillation in pre-training
and again in fine-tuning.

1. The teacher: a pretrained checkpoint (``teacher.checkpoint``) fine-tuned on the task
   (``teacher_finetune``; its validation score, and ``teacher_evaluate``'s test score, are
   the run's teacher row), whose outputs on
   the training examples, and on the extra unlabeled sentences of ``finetune.unlabeled``, are
   written once (``teacher_predictions``).
2. Pre-training distillation (``pretrain_kd``): the student's encoder (a keras-hub
   ``BertBackbone``, the teacher's vocabulary) learns masked LM from scratch on monolingual
   text (``pretrain.text``: files or TFDS; 15% of tokens masked 80/10/10) with
   ``(1 - lambda) * MLE + lambda * KL(teacher || student)`` over the masked positions
   (appendix eq. 2), the teacher's masked-LM head running on the same masked batch
   (``teacher: online``) or read from a top-K cache of one fixed masking per piece
   (``teacher: cache``, the ``teacher_mlm_cache`` stage). The offline MiniLM has no MLM head, so
   ``teacher_mlm`` trains one on the same text first.
   ``pretrain.lambda: 0`` is plain MLM pre-training (``pretrain_mle``: the paper's "BERT
   small"); ``pretrain.enabled: false`` starts the student from random weights.
3. Fine-tuning distillation (stage ``train``): the pre-trained student with the task's head
   learns ``(1 - lambda) * CE(label) + lambda * KL(teacher || student)`` over the task's
   output distribution (eq. 3; appendix eq. 5), the unlabeled sentences contributing the KL
   term alone (appendix section 4). ``finetune.lambda`` sets the default ``loss_weights``
   ``{xe: 1 - lambda, kd: lambda}``.

The paper's Table 7 ablation is the run's ``baseline`` (no pre-training, no KD: "Transformer
small") and ``variants`` that change ``distill.pretrain.enabled``, ``distill.pretrain.lambda``
and ``distill.finetune.lambda``; the run adds the pre-training stage each needs.

What pre-training means is the task's ``pretraining_objective``:

- ``masked_lm`` (classification, BERT; :mod:`.pretrain`): as above. The task gives students
  that wrap a keras-hub ``BertBackbone`` (``student.backbone``), :meth:`tfkd.tasks.Task.build_teacher`,
  text inputs (``corpus(context, "train").texts``) and ``predict_probabilities(context, model,
  texts)`` (the teacher's output distribution, written once by ``teacher_predictions``).
- ``causal_lm`` (language_model, GPT-2; :mod:`.generative`): pre-training and fine-tuning are
  both next-token prediction with ``(1 - lambda) * MLE + lambda * KL(teacher || student)`` over
  every position (appendix eqs. 3 and 6), the frozen teacher running on the same batch: the
  pre-trained teacher during pre-training, the fine-tuned one during fine-tuning. With no
  checkpoint to start from (no model hub here), ``distill.teacher_pretrain`` first pre-trains
  the teacher with tfkd (stage ``teacher_pretrain``); ``teacher.checkpoint`` (a keras-hub GPT-2
  preset such as ``gpt2_medium_en``) replaces that stage. The task gives ``text_batches``
  (batches of its kind from raw text).
- ``masked_seq2seq`` (translation, MASS; :mod:`.mass`): the teacher (``teacher_pretrain``,
  a larger tfkd Transformer) and the student pre-train on monolingual sentences of both
  languages (one shared vocabulary, ``data.shared_vocab``) by predicting a masked segment of
  about half of each sentence (appendix eq. 4, lambda 0.7 in the paper), the teacher online as
  for GPT-2; the teacher is then fine-tuned on the translation pairs, and the student, all its
  weights pre-trained, fine-tunes on them with word-level KD from it (eq. 7: ``(1 - lambda) *
  MLE + lambda * KL`` at every target position, the fine-tuned teacher online).
"""

from tfkd import registry
from tfkd.methods.base import Method
from tfkd.methods.two_stage.checks import run_problems, variant_problems
from tfkd.methods.two_stage.sections import (
    FinetuneSpec,
    PretrainSpec,
    TeacherPretrainSpec,
    TeacherTaskFinetuneSpec,
    TwoStageSpec,
)
from tfkd.methods.two_stage.settings import (
    GENERATIVE,
    PRETRAIN_KD,
    PRETRAIN_MLE,
    objective,
    pretrain_stage,
    teacher_label,
    teacher_test_splits,
    uses_teacher_outputs,
)
from tfkd.plan import PlannedStage
from tfkd.tasks.base import Pretrainable
from tfkd.teachers.mlm_plan import MLM_CACHE_STAGE, MLM_STAGE


class TwoStageMethod(Method):
    name = "two_stage"
    spec_schema = TwoStageSpec
    loss_terms = ("xe", "kd")
    # Table 7's first row: the student with neither pre-training nor distillation
    baseline_by_default = True
    requires = (Pretrainable,)
    # every stage the method may plan, in the order they run
    stage_order = (
        "teacher_pretrain",
        "teacher_finetune",
        "teacher_evaluate",
        "teacher_predictions",
        MLM_STAGE,
        MLM_CACHE_STAGE,
        PRETRAIN_KD,
        PRETRAIN_MLE,
    )

    def default_loss_weights(self, section):
        weight = section.finetune.kd_lambda
        return {"xe": 1.0 - weight, "kd": weight} if 0 < weight < 1 else {"kd" if weight else "xe": 1.0}

    def check(self, context):
        return super().check(context) + run_problems(context.spec, context.task)

    def check_variant(self, context, variant):
        return variant_problems(context.spec, variant)

    def stage_names_for(self, section, task):
        """The stages one train stage with this ``distill`` section needs."""
        names = set()
        stage = pretrain_stage(section)
        if objective(task) in GENERATIVE:
            if uses_teacher_outputs(section):
                names.add("teacher_finetune")
            if stage is not None:
                names.add(stage)
            if section.teacher_pretrain is not None and (uses_teacher_outputs(section) or stage == PRETRAIN_KD):
                names.add("teacher_pretrain")
            return names
        if uses_teacher_outputs(section):
            names |= {"teacher_finetune", "teacher_predictions"}
        if stage is not None:
            names.add(stage)
            if stage == PRETRAIN_KD:
                names.add(MLM_STAGE)
                if section.teacher == "cache":
                    names.add(MLM_CACHE_STAGE)
        return names

    def plan_stages(self, context):
        spec, task = context.spec, context.task
        wanted = set().union(*(self.stage_names_for(own.distill, task) for own in context.method_specs()))
        section = spec.distill
        teacher, pretrain, generative = (f"tfkd.methods.two_stage.{m}" for m in ("teacher", "pretrain", "generative"))
        kd_teacher = (MLM_CACHE_STAGE,) if section.teacher == "cache" else (MLM_STAGE,)
        if objective(task) in GENERATIVE:
            kd_teacher = ("teacher_pretrain",) if section.teacher_pretrain is not None else ()
            pretraining = f"{generative}:GenerativePretrainStage"
        else:
            pretraining = f"{pretrain}:PretrainStage"
        planned = {
            "teacher_pretrain": (("vocab",), f"{generative}:TeacherPretrainStage", {}),
            "teacher_finetune": (
                ("vocab", *(("teacher_pretrain",) if section.teacher_pretrain is not None else ())),
                f"{teacher}:TeacherTaskFinetuneStage",
                {},
            ),
            "teacher_predictions": (("vocab", "teacher_finetune"), f"{teacher}:TeacherPredictionsStage", {}),
            MLM_STAGE: ((), f"{teacher}:PretrainTeacherMLMStage", {}),
            MLM_CACHE_STAGE: (("vocab", MLM_STAGE), f"{pretrain}:PretrainCacheStage", {}),
            PRETRAIN_KD: (("vocab", *kd_teacher), pretraining, {"name": PRETRAIN_KD}),
            PRETRAIN_MLE: (("vocab",), pretraining, {"name": PRETRAIN_MLE}),
            "teacher_evaluate": (("vocab", "teacher_finetune"), f"{teacher}:TeacherEvaluateStage", {}),
        }
        if "teacher_finetune" in wanted and teacher_test_splits(spec):
            wanted.add("teacher_evaluate")
        return [PlannedStage(name, *planned[name]) for name in self.stage_order if name in wanted]

    def decoded_targets_problem(self, context):
        return "two_stage fine-tunes on the task's labels and the teacher's output distributions"

    def online_teacher(self, context):
        """Whether fine-tuning runs the fine-tuned teacher on each batch (causal LM, seq2seq:
        every position's distribution) instead of reading ``teacher_predictions``."""
        return uses_teacher_outputs(context.spec.distill) and objective(context.task) in GENERATIVE

    def train_inputs(self, context):
        section = context.spec.distill
        stage = pretrain_stage(section)
        teacher = ("teacher_finetune",) if self.online_teacher(context) else ("teacher_predictions",)
        return (*((stage,) if stage else ()), *(teacher if uses_teacher_outputs(section) else ()))

    def train_config(self, context):
        # the pre-training and teacher stages' own keys cover their settings
        section = context.spec.distill
        return {
            # the divergence's settings only where they are not the defaults (earlier keys stay)
            "finetune": section.finetune.model_dump(
                mode="json", by_alias=True, exclude=set(section.finetune.omitted_when_default)
            )
            | section.finetune.divergence_key(),
            "pretrain": pretrain_stage(section),
            "loss_weights": self.loss_weights(section),
        }

    def train_columns(self, context, stage_name):
        if not uses_teacher_outputs(context.spec.distill) or self.online_teacher(context):
            return None
        from tfkd.methods.two_stage.teacher import teacher_prediction_columns

        return teacher_prediction_columns(context, context.spec)

    def train_dataset(self, context, stage_name, columns=None):
        spec = context.spec
        if spec.distill.finetune.unlabeled and uses_teacher_outputs(spec.distill):
            from tfkd.methods.two_stage.teacher import unlabeled_sentences

            return context.task.train_dataset(
                context, stage_name, columns=columns, unlabeled=unlabeled_sentences(context, spec)
            )
        return context.task.train_dataset(context, stage_name, columns=columns)

    def initialize_student(self, context, student, stage_name):
        stage = pretrain_stage(context.spec.distill)
        if stage is None:
            return None
        from tfkd.methods.two_stage.pretrain import load_pretrained_backbone

        return load_pretrained_backbone(context, student, stage)

    def teacher_row(self, context, results):
        finetuned = results.get("teacher_finetune") or {}
        if "valid" not in finetuned:
            return None
        scored = {**finetuned, **(results.get("teacher_evaluate") or {})}
        scores = {split: scored[split] for split in ("valid", "test") if split in scored}
        return {
            "label": f"teacher ({teacher_label(context.spec)}, fine-tuned)",
            "scores": scores,
            "parameters": finetuned.get("parameters", 0),
            "steps": finetuned.get("steps"),
            "seconds": finetuned.get("seconds", 0),
        }

    def make_trainer(self, context, student):
        from tfkd.methods.two_stage.finetune import FinetuneDistiller

        spec, task = context.spec, context.task
        teacher = None
        if self.online_teacher(context):
            from tfkd.methods.two_stage.teacher import load_finetuned_teacher

            teacher = load_finetuned_teacher(context)
        from tfkd.distillation.divergences import Divergence

        return FinetuneDistiller(
            student,
            task,
            label_smoothing=spec.train.label_smoothing,
            loss_weights=self.loss_weights(spec.distill),
            teacher=teacher,
            divergence=Divergence.of(spec.distill.finetune),
        )


registry.register("method", "two_stage")(TwoStageMethod())

__all__ = [
    "FinetuneSpec",
    "PretrainSpec",
    "TeacherPretrainSpec",
    "TeacherTaskFinetuneSpec",
    "TwoStageMethod",
    "TwoStageSpec",
]
