"""``distill.method: two_stage``: LightPAFF (``lightpaff.txt``), distillation in pre-training
and again in fine-tuning.

1. The teacher: a pretrained checkpoint (``teacher.checkpoint``) fine-tuned on the task
   (``teacher_finetune``; its validation score is the run's teacher row), whose outputs on
   the training examples, and on the extra unlabeled sentences of ``finetune.unlabeled``, are
   written once (``teacher_predictions``).
2. Pre-training distillation (``pretrain_kd``): the student's encoder (a keras-hub
   ``BertBackbone``, the teacher's vocabulary) learns masked LM from scratch on monolingual
   text (``pretrain.text``: files or TFDS; 15% of tokens masked 80/10/10) with
   ``(1 - lambda) * MLE + lambda * KL(teacher || student)`` over the masked positions
   (appendix eq. 2), the teacher's masked-LM head running on the same masked batch
   (``teacher: online``) or read from a top-K cache of one fixed masking per piece
   (``teacher: cache``, the ``teacher_cache`` stage). The offline MiniLM has no MLM head, so
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

from typing import Literal

import pydantic
from pydantic import ConfigDict, Field, PositiveInt

from tfkd import registry
from tfkd.distillation.settings import TeacherMLMSpec, TopKCacheSpec, check_cache_use
from tfkd.methods.base import Method, MethodSpec
from tfkd.methods.two_stage.settings import (
    CAUSAL_LM,
    GENERATIVE,
    MASKED_LM,
    MASKED_SEQ2SEQ,
    PRETRAIN_KD,
    PRETRAIN_MLE,
    objective,
    pretrain_stage,
    teacher_label,
    uses_teacher_outputs,
)
from tfkd.plan import PlannedStage
from tfkd.spec import LocalPath, Strict
from tfkd.tasks.base import ClassDistributions, Pretrainable, TextBatches

# keys "lambda" (a Python keyword) read and dump by that name
_LAMBDA = ConfigDict(
    extra="forbid",
    frozen=True,
    protected_namespaces=(),
    validate_by_name=True,
    validate_by_alias=True,
    serialize_by_alias=True,
)


class PretrainSpec(Strict):
    """Pre-training the student's encoder by masked LM (with distillation when ``lambda`` > 0)."""

    model_config = _LAMBDA
    # false: no pre-training; the fine-tuning starts from random weights
    enabled: bool = True
    # the monolingual text: text files (one paragraph or sentence a line; lines longer than
    # max_length are cut into pieces) and TFDS corpora ("tfds:NAME" or "tfds:NAME:SPLIT")
    text: list[LocalPath] = []
    # held-out text for the validation MLM loss (a file or "tfds:NAME:SPLIT"), or none
    valid_text: LocalPath | None = None
    # the first this many lines of the text, of the validation text
    text_limit: PositiveInt | None = None
    valid_limit: PositiveInt | None = 2000
    kd_lambda: float = Field(1.0, ge=0, le=1, alias="lambda")
    mask_rate: float = Field(0.15, gt=0, lt=1)  # masked LM
    segment_rate: float = Field(0.5, gt=0, le=1)  # masked seq2seq: the masked segment's share of a sentence
    max_length: PositiveInt = 128
    batch_size: PositiveInt = 32  # sentences (causal LM: blocks)
    steps: PositiveInt = 10000
    learning_rate: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(1000, ge=0)
    log_every: PositiveInt = 100

    @pydantic.model_validator(mode="after")
    def _text(self):
        if self.enabled and not self.text:
            raise ValueError(
                "text: expected at least one text file or tfds:NAME to pre-train on "
                "(or enabled: false for no pre-training)"
            )
        return self


class TeacherTaskFinetuneSpec(Strict):
    """Fine-tuning the teacher checkpoint on the task (the task's batches and loss)."""

    steps: PositiveInt = 2000
    learning_rate: float = Field(5e-5, gt=0)
    warmup_steps: int = Field(200, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    log_every: PositiveInt = 100
    seed: int = 1


class TeacherPretrainSpec(Strict):
    """Pre-training a teacher from scratch (when no checkpoint is named): a GPT-2 by causal
    LM, or a Transformer encoder-decoder by masked seq2seq (MASS)."""

    # text files (one paragraph a line) and TFDS corpora ("tfds:NAME" or "tfds:NAME:SPLIT")
    text: list[LocalPath] = Field(min_length=1)
    text_limit: PositiveInt | None = None
    valid_text: LocalPath | None = None
    valid_limit: PositiveInt | None = 2000
    num_layers: PositiveInt = 6  # a seq2seq teacher's encoder blocks
    decoder_layers: PositiveInt | None = None  # seq2seq only (default: num_layers)
    hidden_dim: PositiveInt = 512
    num_heads: PositiveInt = 8
    intermediate_dim: PositiveInt = 2048
    dropout: float = Field(0.1, ge=0, lt=1)
    max_sequence_length: PositiveInt = 1024
    max_length: int = Field(128, ge=2)  # tokens per training block (sentence)
    batch_size: PositiveInt = 16  # blocks (sentences)
    segment_rate: float = Field(0.5, gt=0, le=1)  # masked seq2seq
    steps: PositiveInt = 10000
    learning_rate: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(1000, ge=0)
    log_every: PositiveInt = 100
    seed: int = 1

    @pydantic.model_validator(mode="after")
    def _sizes(self):
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be a multiple of num_heads ({self.num_heads})")
        if self.max_length > self.max_sequence_length:
            raise ValueError(f"max_length ({self.max_length}) exceeds max_sequence_length ({self.max_sequence_length})")
        return self


class FinetuneSpec(Strict):
    model_config = _LAMBDA
    kd_lambda: float = Field(0.5, ge=0, le=1, alias="lambda")
    # extra sentences labelled by the teacher alone (appendix section 4): a text file (one a
    # line) or "tfds:NAME[:SPLIT]"; they add the KL term only (so lambda 0 leaves them out)
    unlabeled: LocalPath | None = None
    unlabeled_limit: PositiveInt | None = None


class TwoStageSpec(MethodSpec):
    method: str = "two_stage"
    pretrain: PretrainSpec = PretrainSpec(enabled=False)
    finetune: FinetuneSpec = FinetuneSpec()
    teacher_mlm: TeacherMLMSpec = TeacherMLMSpec()
    teacher_finetune: TeacherTaskFinetuneSpec = TeacherTaskFinetuneSpec()
    # causal_lm and masked_seq2seq: pre-train the teacher from scratch (instead of teacher.checkpoint)
    teacher_pretrain: TeacherPretrainSpec | None = None
    # pre-training distillation's teacher: the frozen masked LM on the same batch (a new masking
    # every pass), or its top-K written once for one fixed masking per piece (teacher_cache)
    teacher: Literal["online", "cache"] = "online"
    cache: TopKCacheSpec = TopKCacheSpec()

    @pydantic.model_validator(mode="after")
    def _cache_needs_teacher_cache(self):
        return check_cache_use(self)


# what a variant may change: the Table 7 switches (its stages are the run's)
VARIANT_KEYS = ({"pretrain", "enabled"}, {"pretrain", "lambda"}, {"finetune", "lambda"})


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
        "teacher_predictions",
        "teacher_mlm",
        "teacher_cache",
        PRETRAIN_KD,
        PRETRAIN_MLE,
    )

    def default_loss_weights(self, section):
        weight = section.finetune.kd_lambda
        return {"xe": 1.0 - weight, "kd": weight} if 0 < weight < 1 else {"kd" if weight else "xe": 1.0}

    def check(self, context):
        spec, task = context.spec, context.task
        problems = super().check(context)
        section = spec.distill
        kind = objective(task)
        needs_teacher = uses_teacher_outputs(section) or pretrain_stage(section) == PRETRAIN_KD
        if spec.teacher is None and section.teacher_pretrain is None and needs_teacher and kind != MASKED_SEQ2SEQ:
            problems.append(
                (
                    ("distill", "method"),
                    "two_stage needs a teacher section (teacher.checkpoint) to "
                    "distil from; set distill.pretrain.lambda and "
                    "distill.finetune.lambda to 0 for no teacher",
                )
            )
        needed = {MASKED_LM: ClassDistributions, CAUSAL_LM: TextBatches}.get(kind)
        if kind not in (MASKED_LM, *GENERATIVE) or (needed is not None and not isinstance(task, needed)):
            if kind is not None:
                problems.append(
                    (
                        ("task",),
                        f"two_stage needs a task whose students wrap a pretrained backbone "
                        f"and a pre-training objective (masked_lm, causal_lm, masked_seq2seq) "
                        f"with its abilities; task {spec.task} has none",
                    )
                )
            return problems
        if section.teacher_pretrain is not None:
            if kind not in GENERATIVE:
                problems.append(
                    (
                        ("distill", "teacher_pretrain"),
                        f"pre-training a teacher from scratch is for "
                        f"causal LM and seq2seq tasks; task {spec.task} "
                        "fine-tunes teacher.checkpoint",
                    )
                )
            elif kind == CAUSAL_LM and section.teacher_pretrain.decoder_layers is not None:
                problems.append(
                    (
                        ("distill", "teacher_pretrain", "decoder_layers"),
                        "applies to seq2seq teachers; a GPT-2 has num_layers only",
                    )
                )
            elif spec.teacher is not None and kind == CAUSAL_LM:
                problems.append(
                    (
                        ("distill", "teacher_pretrain"),
                        "the spec names teacher.checkpoint as well: keep one (the checkpoint replaces this stage)",
                    )
                )
        if kind in GENERATIVE:
            if section.teacher == "cache":
                label = {CAUSAL_LM: "causal-LM", MASKED_SEQ2SEQ: "masked seq2seq"}[kind]
                problems.append(
                    (
                        ("distill", "teacher"),
                        f"{label} distillation runs the teacher online (a cache "
                        f"of every position's distribution is too large)",
                    )
                )
            if section.finetune.unlabeled:
                problems.append((("distill", "finetune", "unlabeled"), "applies to classification only"))
        if kind == MASKED_SEQ2SEQ:
            if spec.teacher is not None:
                problems.append(
                    (
                        ("teacher",),
                        "no MASS checkpoint can be read: the seq2seq teacher is pre-trained "
                        "by tfkd (distill.teacher_pretrain); remove the teacher section",
                    )
                )
            elif needs_teacher and section.teacher_pretrain is None:
                problems.append(
                    (
                        ("distill", "teacher_pretrain"),
                        "a seq2seq teacher is pre-trained by tfkd: "
                        "expected this section (or lambda 0 in both "
                        "stages for no teacher)",
                    )
                )
            if (section.pretrain.enabled or section.teacher_pretrain is not None) and not spec.data.shared_vocab:
                problems.append(
                    (
                        ("data", "shared_vocab"),
                        "masked seq2seq pre-training reads both languages with one vocabulary: expected true",
                    )
                )
            return problems
        if kind == CAUSAL_LM:
            if spec.teacher is not None and spec.teacher.kind != "gpt2":
                problems.append((("teacher", "kind"), f"task {spec.task} distils a causal LM: expected gpt2"))
            tokenizer = spec.data.tokenizer
            if section.teacher_pretrain is None and needs_teacher and tokenizer.kind != "teacher":
                problems.append(
                    (
                        ("data", "tokenizer", "kind"),
                        "a pretrained teacher's distributions are over its own vocabulary: expected kind: teacher",
                    )
                )
            return problems
        tokenizer = getattr(spec.data, "tokenizer", None)
        if (
            section.pretrain.enabled
            and section.pretrain.kd_lambda > 0
            and tokenizer is not None
            and (tokenizer.kind != "teacher" or tokenizer.min_count is not None)
        ):
            problems.append(
                (
                    ("data", "tokenizer"),
                    "two_stage pre-training distils the teacher's masked-LM "
                    "distributions over its whole vocabulary: expected kind: teacher "
                    "without min_count",
                )
            )
        return problems

    def check_variant(self, context, variant):
        spec = context.spec
        problems = []
        main, own = spec.distill.model_dump(by_alias=True), variant.distill.model_dump(by_alias=True)
        for key in ("teacher_mlm", "teacher_finetune", "teacher_pretrain", "teacher", "cache"):
            if main[key] != own[key]:
                problems.append(
                    (("distill", key), "a variant shares the run's teacher stages; change it for the run instead")
                )
        for key in sorted(set(main["pretrain"]) - {"enabled", "lambda"}):
            if main["pretrain"][key] != own["pretrain"][key] and spec.distill.pretrain.enabled:
                problems.append(
                    (
                        ("distill", "pretrain", key),
                        "a variant shares the run's pre-training settings (it may change enabled and lambda)",
                    )
                )
        if uses_teacher_outputs(variant.distill) and (
            main["finetune"]["unlabeled"] != own["finetune"]["unlabeled"]
            or main["finetune"]["unlabeled_limit"] != own["finetune"]["unlabeled_limit"]
        ):
            problems.append(
                (("distill", "finetune", "unlabeled"), "a variant shares the run's teacher-labelled sentences")
            )
        if pretrain_stage(variant.distill) is not None and variant.student != spec.student:
            problems.append(
                (
                    ("student",),
                    "a pre-trained variant's student is the run's (the pre-training "
                    "stages build it); set distill.pretrain.enabled: false to change it",
                )
            )
        kd = [s.pretrain.kd_lambda for s in (spec.distill, variant.distill) if pretrain_stage(s) == PRETRAIN_KD]
        if len(set(kd)) > 1:
            problems.append(
                (
                    ("distill", "pretrain", "lambda"),
                    f"a run pre-trains with distillation once (lambda {kd[0]:g}); a variant may use it or 0",
                )
            )
        return problems

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
                names.add("teacher_mlm")
                if section.teacher == "cache":
                    names.add("teacher_cache")
        return names

    def plan_stages(self, context):
        spec, task = context.spec, context.task
        wanted = set().union(*(self.stage_names_for(own.distill, task) for own in context.method_specs()))
        section = spec.distill
        teacher, pretrain, generative = (f"tfkd.methods.two_stage.{m}" for m in ("teacher", "pretrain", "generative"))
        kd_teacher = ("teacher_cache",) if section.teacher == "cache" else ("teacher_mlm",)
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
            "teacher_mlm": ((), f"{teacher}:PretrainTeacherMLMStage", {}),
            "teacher_cache": (("vocab", "teacher_mlm"), f"{pretrain}:PretrainCacheStage", {}),
            PRETRAIN_KD: (("vocab", *kd_teacher), pretraining, {"name": PRETRAIN_KD}),
            PRETRAIN_MLE: (("vocab",), pretraining, {"name": PRETRAIN_MLE}),
        }
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
            "finetune": section.finetune.model_dump(mode="json", by_alias=True),
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
        scores = {split: finetuned[split] for split in ("valid", "test") if split in finetuned}
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
        return FinetuneDistiller(
            student,
            task,
            label_smoothing=spec.train.label_smoothing,
            loss_weights=self.loss_weights(spec.distill),
            teacher=teacher,
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
