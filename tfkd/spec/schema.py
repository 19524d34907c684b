"""The spec's schema: pydantic models of its sections and the field types they share.

:class:`Strict` is the base of every section (tasks and methods define theirs on it);
:data:`LocalPath` and :data:`ModelReference` are the path and model fields, made absolute (and,
while a spec is read to run, checked) as they are validated. ``data``, ``decode``, ``evaluate``
and ``distill`` are validated later, by the task's and the method's own schemas
(:mod:`tfkd.spec.checks`).
"""

import contextvars
import importlib.util
import json
import os
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt

from tfkd import registry

SPEC_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


Strict = _Strict  # the base of every spec section, for tasks and methods defined elsewhere


def _absolute(value):
    """A local path made absolute, relative to the working directory (a spec's data and run
    paths are, like a shell's); ``tfds:NAME`` and URLs unchanged."""
    if not value or value.startswith("tfds:") or "://" in value:
        return value
    return os.path.abspath(os.path.expanduser(value))


# on while a spec is read to be run (not when a finished run's spec is reopened elsewhere)
_CHECK_MODELS = contextvars.ContextVar("tfkd_check_models", default=False)


def _model_reference(value):
    """A model reference: a keras-hub preset name and URLs unchanged; ``package:module/dir``
    unchanged and, when a spec is read to run, checked installed; a local folder (``./x``,
    ``a/b``, ``~/x``, ``/x``) made absolute and checked to exist."""
    if not value or "://" in value:
        return value
    if value.startswith("package:"):
        if _CHECK_MODELS.get():
            package_folder(value)
        return value
    if ":" in value or not (os.sep in value or value.startswith((".", "~"))):
        return value  # a preset name
    path = os.path.abspath(os.path.expanduser(value))
    if _CHECK_MODELS.get() and not os.path.isdir(path):
        raise ValueError(
            f"folder {path} does not exist (expected a keras-hub preset name, a local folder or package:MODULE/DIR)"
        )
    return path


def package_folder(reference):
    """The folder ``package:<module>/<subdir>`` names inside an installed Python package (found
    without importing it); ValueError saying what is missing."""
    module, _, subdir = reference[len("package:") :].partition("/")
    found = importlib.util.find_spec(module) if module else None
    if found is None or not found.submodule_search_locations:
        raise ValueError(f"package {module!r} is not installed (pip install {module.replace('_', '-')})")
    path = os.path.join(list(found.submodule_search_locations)[0], subdir)
    if not os.path.isdir(path):
        raise ValueError(f"{path} does not exist in package {module!r}")
    return path


# A file or folder a spec reads. Stored absolute, so a run's spec.yaml means the same from any
# working directory, and the same files named two ways (../data, /abs/data) give the same keys.
LocalPath = Annotated[str, AfterValidator(_absolute)]
# a preset name, "package:module/subdir" or a local folder (made absolute)
ModelReference = Annotated[str, AfterValidator(_model_reference)]
# a random seed: NumPy's (and so keras.utils.set_random_seed's) range
Seed = Annotated[int, Field(ge=0, lt=2**32)]


def _one_folder(name):
    if set(name) == {"."}:
        raise ValueError(f"{name!r} is not a folder of its own inside run_dir; name the run")
    return name


# a run's folder inside run_dir: letters, digits, _ . - (not . or .., which are run_dir or above it)
RunName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$"), AfterValidator(_one_folder)]


class TokenizerSpec(_Strict):
    # learned: a WordPiece vocabulary learned from the training side; sentencepiece: a
    # SentencePiece model learned from it (model_type unigram or bpe, exactly vocab_size pieces,
    # exact detokenization); teacher: the teacher checkpoint's; pretrained: the vocabulary of
    # ``checkpoint`` (a pretrained model the student is built from, such as AB-Net's BERTs),
    # ids unchanged
    kind: Literal["learned", "sentencepiece", "teacher", "pretrained"] = "learned"
    vocab_size: PositiveInt = 8000
    model_type: Literal["unigram", "bpe"] = "unigram"  # kind sentencepiece
    lowercase: bool = False
    strip_accents: bool = False
    # kind "teacher" only: keep the teacher's tokens seen at least this often in the training
    # side (fairseq's --thresholdtgt), plus the special tokens; unset keeps them all
    min_count: PositiveInt | None = None
    # kind "pretrained" only: a keras-hub preset, local folder or "package:module/subdir"
    checkpoint: ModelReference | None = None

    def key(self):
        """What the vocabulary depends on (a stage key's part): the settings, ``model_type``
        only for SentencePiece (so the keys of other vocabularies stay as they were)."""
        dump = self.model_dump()
        if self.kind != "sentencepiece":
            dump.pop("model_type")
        return dump

    @pydantic.model_validator(mode="after")
    def _min_count_needs_teacher(self):
        if self.min_count is not None and self.kind != "teacher":
            raise ValueError(
                'min_count applies to kind "teacher" only (a learned vocabulary has vocab_size; '
                "a pretrained one keeps its ids)"
            )
        if self.kind == "sentencepiece" and self.strip_accents:
            raise ValueError(
                "strip_accents applies to WordPiece vocabularies (SentencePiece normalises with NFKC, "
                "and lowercase folds case)"
            )
        if self.model_type != "unigram" and self.kind != "sentencepiece":
            raise ValueError('model_type applies to kind "sentencepiece"')
        if self.kind == "pretrained" and not self.checkpoint:
            raise ValueError('kind "pretrained" needs checkpoint (the model whose vocabulary it is)')
        if self.kind != "pretrained" and self.checkpoint:
            raise ValueError('checkpoint applies to kind "pretrained" only')
        return self


class LayerRef(BaseModel):
    """``{kind: registered_name, **constructor_kwargs}``."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str

    @property
    def kwargs(self):
        return dict(self.model_extra or {})


class TeacherSpec(_Strict):
    # the checkpoint's architecture: a BERT encoder or a GPT-2 causal LM
    kind: Literal["bert", "gpt2"] = "bert"
    # a keras-hub preset name, a local folder, or "package:module/subdir"
    checkpoint: ModelReference


class KeepBestSpec(_Strict):
    # a validation value the stage reports at each checkpoint, without "val_": loss, nll, xe, or
    # the task's metric on the first valid_metric_examples examples (bleu for translation)
    metric: str = "loss"
    # "auto": lower is better for loss, nll, xe and perplexity, higher for anything else
    mode: Literal["auto", "min", "max"] = "auto"


class EarlyStopSpec(KeepBestSpec):
    # checkpoints (validations) without a new best before training stops
    patience: PositiveInt = 3


class TrainSpec(_Strict):
    steps: PositiveInt = 4000
    checkpoint_every: PositiveInt = 500
    log_every: PositiveInt = 100
    learning_rate: float = Field(1.0, gt=0)
    warmup_steps: PositiveInt = 4000
    adam_beta_1: float = Field(0.9, ge=0, lt=1)
    adam_beta_2: float = Field(0.98, ge=0, lt=1)
    adam_epsilon: float = Field(1e-9, gt=0)
    clip_norm: float | None = Field(None, gt=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    seed: Seed = 1
    # train every student once per seed (tfkd run --seeds 1,2,3): the first seed's stages keep
    # their names (train, evaluate, baseline, ...), the others are NAME-sSEED; the stages that
    # do not depend on the seed (the teacher's) run once. The comparison table gives each
    # student's mean and standard deviation over the seeds. Unset: train.seed alone
    seeds: list[Seed] | None = Field(None, min_length=1)
    strategy: Literal["auto", "one_device", "mirrored", "multi_worker", "tpu"] = "auto"
    valid_metric_examples: int = Field(200, ge=0)
    # gradient accumulation (fairseq --update-freq): each of the ``steps`` updates sums the
    # gradients of this many batches, normalised over their union (one device)
    accumulate: PositiveInt = 1
    # stop when the validation metric has not improved for ``patience`` checkpoints; the
    # student kept is the best one seen (unset: train all ``steps``)
    early_stop: EarlyStopSpec | None = None
    # the student's weights at its best validation stay in <stage>/checkpoints/best.weights.h5
    # (tfkd translate/export --weights); the stage's student is still the last (or average_last)
    keep_best: KeepBestSpec | None = None
    # TensorFlow op determinism while the run's stages run (the teacher's fine-tuning too:
    # deterministic kernels and tf.data order; an op without a deterministic implementation is
    # an error): with the same seed, bit-identical runs
    deterministic: bool = False
    # XLA-compiled training steps, with batches padded to their length bucket's boundary so a
    # stage compiles at most one program per bucket (every training stage of the run). auto:
    # Keras' rule, on with one GPU (or TPU), off on CPU and with more than one device
    jit_compile: Literal["auto", True, False] = "auto"
    # the student's weights at each of the last N checkpoints stay in <stage>/checkpoints/
    keep_last: int = Field(0, ge=0)
    # the saved student is the mean of the last N checkpoints (kept as keep_last: N at least)
    average_last: PositiveInt | None = None
    # SIGTERM (a preemption notice) or Ctrl-C while a stage trains: the step ends, the checkpoint
    # is written and tfkd run exits 143 / 130; if that takes longer than this, it exits at once
    # (the last good checkpoint is kept either way). 25 s fits Kubernetes' and GCE's 30 s notice
    preemption_grace_s: float = Field(25.0, gt=0)

    @pydantic.model_validator(mode="after")
    def _first_seed_is_the_runs(self):
        if self.seeds is None:
            return self
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: expected different seeds, got {self.seeds}")
        if "seed" in self.model_fields_set and self.seed != self.seeds[0]:
            raise ValueError(
                f"seed ({self.seed}) and seeds ({self.seeds}): the run's seed is the first of seeds; give one of them"
            )
        object.__setattr__(self, "seed", self.seeds[0])
        return self

    @pydantic.model_validator(mode="after")
    def _average_what_is_kept(self):
        if self.average_last is not None and self.early_stop is not None:
            raise ValueError("give average_last or early_stop, not both (one decides which weights are the student)")
        if self.keep_best is not None and self.early_stop is not None:
            raise ValueError("give keep_best or early_stop, not both (early_stop keeps the best by its metric)")
        return self

    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"
    # start from the student weights another train stage saved (e.g. a pre-distilled student)
    init_from: str | None = None
    # the learning rate: inverse_sqrt (Vaswani et al.: learning_rate * hidden_dim^-0.5 *
    # min(step^-0.5, step * warmup_steps^-1.5)) or linear (BERT fine-tuning: warm-up to
    # learning_rate over warmup_steps, then linear decay to 0 at steps)
    schedule: Literal["inverse_sqrt", "linear"] = "inverse_sqrt"


# export.format of the student's trained weights and config alone (tfkd.exporters.adapters), which
# export.adapters_only: true still selects
ADAPTERS_EXPORTER: Literal["adapters"] = "adapters"


class ExportSpec(_Strict):
    model_name: str | None = None
    version: PositiveInt = 1
    # the registered exporter that writes it (tfkd list exporter): saved_model, a SavedModel that
    # takes raw text; adapters, the student's trained weights and config alone (a student built on
    # frozen pretrained models, such as AB-Net's adapters)
    format: str = "saved_model"
    # the longest text a SavedModel's signature reads, in characters: longer inputs are cut to
    # their first max_input_chars (in the graph, before tokenization), so one huge line costs
    # bounded time and memory; the default is far beyond every task's token window
    max_input_chars: PositiveInt = 65536
    # format ctranslate2: the weights' type in the CTranslate2 model (tfkd export --quantization);
    # default float32
    quantization: (
        Literal["float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16"]
        | None
    ) = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _adapters_only(cls, data):
        """``adapters_only: true``, how ``format: adapters`` was written before exporters had
        names, is read as that (and not kept)."""
        if not isinstance(data, dict) or "adapters_only" not in data:
            return data
        data = dict(data)
        flag = data.pop("adapters_only")
        if not isinstance(flag, bool):
            raise ValueError(f"adapters_only: expected true or false, got {json.dumps(flag, default=str)}")
        if flag:
            if data.setdefault("format", ADAPTERS_EXPORTER) != ADAPTERS_EXPORTER:
                raise ValueError(f"adapters_only: true is format: {ADAPTERS_EXPORTER}; give one of them")
        return data

    @pydantic.field_validator("format")
    @classmethod
    def _registered(cls, name):
        return registry.check_name("exporter", name)

    @pydantic.field_validator("quantization")
    @classmethod
    def _quantization_of_ctranslate2(cls, quantization, info):
        export_format = info.data.get("format")
        if quantization is not None and export_format != "ctranslate2":
            raise ValueError(f"applies to format ctranslate2 (format is {export_format})")
        return quantization


class SweepSpec(_Strict):
    """Several values of a few settings, each combination a student of the run, the best one
    chosen on a validation split and only it scored on the test splits (stage ``select``)."""

    # {"distill.alpha": [0.25, 0.5, 0.75], ...}: keys under distill, student, train and decode,
    # as variants take them; every combination other than the spec's own settings becomes a
    # variant named after its values (alpha0.25, alpha0.25-mask_rate0.3, ...)
    grid: dict[str, list[Any]] = Field(min_length=1)
    # where the student is chosen, by the task's metric (the mean over train.seeds); never test
    split: Literal["valid"] = "valid"


class ReportSpec(_Strict):
    """``tfkd run`` writes ``<run>/report/index.html`` (what ``tfkd report RUN`` writes) when it
    ends: the comparison table, training curves, the task's figures, size and speed against
    quality."""

    enabled: bool = True
    # time each student's batch-1 predictions for the size/speed figure (seconds a student)
    latency: bool = True


class Spec(_Strict):
    """A run. ``data``, ``decode`` and ``evaluate`` are validated by the task's schemas and
    ``distill`` by the method's (:func:`load_spec` replaces them with those models)."""

    version: Literal[1]
    name: RunName
    imports: list[str] = []
    run_dir: str = "runs"
    task: str | None = None  # default: the registry's default task
    stages: list[str] | None = None
    data: Any
    teacher: TeacherSpec | None = None
    distill: Any = None
    student: LayerRef
    train: TrainSpec = TrainSpec()
    decode: Any = {}
    evaluate: Any = {}
    export: ExportSpec = ExportSpec()
    # students trained beside the main one, each with a few settings changed:
    # {name: {"distill.gate": "none", ...}} (keys under distill, student, train and decode; a
    # key naming a whole section, such as student, replaces it)
    variants: dict[str, dict[str, Any]] | None = None
    # a grid of settings whose best student is chosen on validation (see SweepSpec)
    sweep: SweepSpec | None = None
    report: ReportSpec = ReportSpec()
    _swept: Any = pydantic.PrivateAttr(default=None)  # the variant names the sweep expanded into
    _located: Any = pydantic.PrivateAttr(default=None)
    _spec_dir: Any = pydantic.PrivateAttr(default=None)
    _variants: Any = pydantic.PrivateAttr(default=None)
    _plan: Any = pydantic.PrivateAttr(default=None)  # (id, tfkd.plan.RunPlan): see tfkd.plan.plan_run

    @property
    def method(self):
        """The name of the distillation method (the registry's default without ``distill``)."""
        return self.distill.method

    def variant(self, name):
        """The spec of variant ``name``: this one with the variant's settings applied."""
        return self._variants[name]

    def student_config(self):
        """The validated student kwargs (schema defaults filled in)."""
        schema = registry.schema("student", self.student.kind)
        if schema is None:
            return self.student.kwargs
        return schema.model_validate(self.student.kwargs)

    def to_dict(self):
        """The spec as YAML writes it back (``spec.yaml`` of a run, ``tfkd config``): a sweep's
        students stay in its ``sweep`` section (loading expands them into variants again)."""
        data = self.model_dump(mode="json")
        if self._swept:
            variants = {k: v for k, v in (data.get("variants") or {}).items() if k not in self._swept}
            data["variants"] = variants or None
        return data


def validate_layer_ref(kind, ref: LayerRef, supplied=()):
    """Check a ``{kind: ..., **kwargs}`` reference against the registry and constructor.

    ``supplied`` names the arguments the builder passes itself (width, heads, dropout...).
    """
    registry.check_kwargs(kind, ref.kind, ref.kwargs, supplied)
