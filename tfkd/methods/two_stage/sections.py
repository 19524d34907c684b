"""The ``distill`` section of ``distill.method: two_stage`` (LightPAFF): pre-training,
fine-tuning, the teacher's own stages and its cache."""

from typing import Literal

import pydantic
from pydantic import ConfigDict, Field, PositiveInt

from tfkd.distillation.settings import DivergenceSettings
from tfkd.methods.base import MethodSpec, without_omitted_defaults
from tfkd.spec import LocalPath, Seed, Strict
from tfkd.teachers.settings import TeacherMLMSpec, TopKCacheSpec, check_cache_use

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
    seed: Seed = 1


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
    seed: Seed = 1

    @pydantic.model_validator(mode="after")
    def _sizes(self):
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be a multiple of num_heads ({self.num_heads})")
        if self.max_length > self.max_sequence_length:
            raise ValueError(f"max_length ({self.max_length}) exceeds max_sequence_length ({self.max_sequence_length})")
        return self


class FinetuneSpec(DivergenceSettings):
    """Fine-tuning distillation; its ``divergence`` (forward KL: the paper's ``KL(teacher ||
    student)``) compares the student's output distribution with the teacher's."""

    model_config = _LAMBDA
    kd_lambda: float = Field(0.5, ge=0, le=1, alias="lambda")
    # extra sentences labelled by the teacher alone (appendix section 4): a text file (one a
    # line), "tfds:NAME[:SPLIT]", or "unused_train": the training split's texts past
    # data.train_limit, their labels left out (in-domain text); they add the KL term only (so
    # lambda 0 leaves them out)
    unlabeled: Literal["unused_train"] | LocalPath | None = None
    unlabeled_limit: PositiveInt | None = None

    @pydantic.model_serializer(mode="wrap")
    def _omit_default_divergence(self, handler):
        return without_omitted_defaults(self, handler(self))

    @pydantic.model_validator(mode="after")
    def _no_tail(self):
        if self.tail:
            raise ValueError(
                "tail applies to a top-K teacher cache; fine-tuning distils the teacher's whole distribution"
            )
        return self


class TwoStageSpec(MethodSpec):
    method: str = "two_stage"
    pretrain: PretrainSpec = PretrainSpec(enabled=False)
    finetune: FinetuneSpec = FinetuneSpec()
    teacher_mlm: TeacherMLMSpec = TeacherMLMSpec()
    teacher_finetune: TeacherTaskFinetuneSpec = TeacherTaskFinetuneSpec()
    # causal_lm and masked_seq2seq: pre-train the teacher from scratch (instead of teacher.checkpoint)
    teacher_pretrain: TeacherPretrainSpec | None = None
    # pre-training distillation's teacher: the frozen masked LM on the same batch (a new masking
    # every pass), or its top-K written once for one fixed masking per piece (teacher_mlm_cache)
    teacher: Literal["online", "cache"] = "online"
    cache: TopKCacheSpec = TopKCacheSpec()

    @pydantic.model_validator(mode="after")
    def _cache_needs_teacher_cache(self):
        return check_cache_use(self)
