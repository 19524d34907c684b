"""What ``tfkd validate`` checks of a two_stage run beyond its schema: the pairing of the
section with the task's pre-training objective (:func:`run_problems`) and what a variant may
change (:func:`variant_problems`). Each problem is ``(key path, message)``."""

from tfkd.methods.two_stage.settings import (
    CAUSAL_LM,
    GENERATIVE,
    MASKED_LM,
    MASKED_SEQ2SEQ,
    PRETRAIN_KD,
    objective,
    pretrain_stage,
    uses_teacher_outputs,
)
from tfkd.tasks.base import ClassDistributions, TextBatches


def needs_teacher(section):
    """Whether a run with this ``distill`` section reads a teacher's outputs at all."""
    return uses_teacher_outputs(section) or pretrain_stage(section) == PRETRAIN_KD


def run_problems(spec, task):
    """The spec's problems as a two_stage run of ``task``."""
    section = spec.distill
    kind = objective(task)
    problems = []
    if spec.teacher is None and section.teacher_pretrain is None and needs_teacher(section) and kind != MASKED_SEQ2SEQ:
        problems.append(
            (
                ("distill", "method"),
                "two_stage needs a teacher section (teacher.checkpoint) to distil from; set "
                "distill.pretrain.lambda and distill.finetune.lambda to 0 for no teacher",
            )
        )
    needed = {MASKED_LM: ClassDistributions, CAUSAL_LM: TextBatches}.get(kind)
    if kind not in (MASKED_LM, *GENERATIVE) or (needed is not None and not isinstance(task, needed)):
        if kind is not None:
            problems.append(
                (
                    ("task",),
                    f"two_stage needs a task whose students wrap a pretrained backbone and a pre-training "
                    f"objective (masked_lm, causal_lm, masked_seq2seq) with its abilities; task {spec.task} has none",
                )
            )
        return problems
    problems += _teacher_pretrain_problems(spec, kind)
    by_objective = {
        MASKED_SEQ2SEQ: _masked_seq2seq_problems,
        CAUSAL_LM: _causal_lm_problems,
        MASKED_LM: _masked_lm_problems,
    }
    return problems + by_objective[kind](spec)


def _teacher_pretrain_problems(spec, kind):
    section = spec.distill
    problems = []
    if section.teacher_pretrain is not None:
        if kind not in GENERATIVE:
            problems.append(
                (
                    ("distill", "teacher_pretrain"),
                    f"pre-training a teacher from scratch is for causal LM and seq2seq tasks; "
                    f"task {spec.task} fine-tunes teacher.checkpoint",
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
                    f"{label} distillation runs the teacher online (a cache of every position's "
                    f"distribution is too large)",
                )
            )
        if section.finetune.unlabeled:
            problems.append((("distill", "finetune", "unlabeled"), "applies to classification only"))
    return problems


def _masked_seq2seq_problems(spec):
    section = spec.distill
    problems = []
    if spec.teacher is not None:
        problems.append(
            (
                ("teacher",),
                "no MASS checkpoint can be read: the seq2seq teacher is pre-trained by tfkd "
                "(distill.teacher_pretrain); remove the teacher section",
            )
        )
    elif needs_teacher(section) and section.teacher_pretrain is None:
        problems.append(
            (
                ("distill", "teacher_pretrain"),
                "a seq2seq teacher is pre-trained by tfkd: expected this section (or lambda 0 in both "
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


def _causal_lm_problems(spec):
    section = spec.distill
    problems = []
    if spec.teacher is not None and spec.teacher.kind != "gpt2":
        problems.append((("teacher", "kind"), f"task {spec.task} distils a causal LM: expected gpt2"))
    tokenizer = spec.data.tokenizer
    if section.teacher_pretrain is None and needs_teacher(section) and tokenizer.kind != "teacher":
        problems.append(
            (
                ("data", "tokenizer", "kind"),
                "a pretrained teacher's distributions are over its own vocabulary: expected kind: teacher",
            )
        )
    return problems


def _masked_lm_problems(spec):
    section = spec.distill
    problems = []
    if section.finetune.unlabeled == "unused_train" and not getattr(spec.data, "train_limit", None):
        problems.append(
            (
                ("distill", "finetune", "unlabeled"),
                "unused_train is the training split's texts past data.train_limit, and data.train_limit is not set",
            )
        )
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
                "two_stage pre-training distils the teacher's masked-LM distributions over its whole "
                "vocabulary: expected kind: teacher without min_count",
            )
        )
    return problems


def variant_problems(spec, variant):
    """What ``variant`` changes that a two_stage variant may not: the teacher's stages and
    the pre-training settings are the run's; a variant may switch pre-training on or off and
    change either lambda (Table 7's switches)."""
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
        problems.append((("distill", "finetune", "unlabeled"), "a variant shares the run's teacher-labelled sentences"))
    if pretrain_stage(variant.distill) is not None and variant.student != spec.student:
        problems.append(
            (
                ("student",),
                "a pre-trained variant's student is the run's (the pre-training stages build it); "
                "set distill.pretrain.enabled: false to change it",
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
