"""Specs: YAML in, validated objects out.

Resolution is layered (OpenNMT-tf style): schema defaults, then the spec file, then
``--set key.path=value`` overrides. ``${VAR}`` and ``${VAR:-default}`` in string values are
replaced from the environment. Every problem is reported as one line,
``file:line: key.path: what was expected, got what``, through :class:`SpecError`.
"""

import contextvars
import copy
import importlib
import importlib.util
import json
import os
import re
import sys
from typing import Annotated, Any, Literal, Optional

import pydantic
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt

from tfkd import registry
from tfkd.stage_names import stage_names

SPEC_VERSION = 1
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SpecError(ValueError):
    """A spec problem; ``str()`` is the one-line message the CLI prints."""


# ----------------------------------------------------------------------------- schema


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
        raise ValueError(f"folder {path} does not exist (expected a keras-hub preset name, a local folder or "
                         "package:MODULE/DIR)")
    return path


def package_folder(reference):
    """The folder ``package:<module>/<subdir>`` names inside an installed Python package (found
    without importing it); ValueError saying what is missing."""
    module, _, subdir = reference[len("package:"):].partition("/")
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
    min_count: Optional[PositiveInt] = None
    # kind "pretrained" only: a keras-hub preset, local folder or "package:module/subdir"
    checkpoint: Optional[ModelReference] = None

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
            raise ValueError('min_count applies to kind "teacher" only (a learned vocabulary has vocab_size; '
                             'a pretrained one keeps its ids)')
        if self.kind == "sentencepiece" and self.strip_accents:
            raise ValueError("strip_accents applies to WordPiece vocabularies (SentencePiece normalises with NFKC, "
                             "and lowercase folds case)")
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
    clip_norm: Optional[float] = Field(None, gt=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    seed: int = 1
    strategy: Literal["auto", "one_device", "mirrored", "multi_worker", "tpu"] = "auto"
    valid_metric_examples: int = Field(200, ge=0)
    # gradient accumulation (fairseq --update-freq): each of the ``steps`` updates sums the
    # gradients of this many batches, normalised over their union (one device)
    accumulate: PositiveInt = 1
    # stop when the validation metric has not improved for ``patience`` checkpoints; the
    # student kept is the best one seen (unset: train all ``steps``)
    early_stop: Optional[EarlyStopSpec] = None
    # the student's weights at its best validation stay in <stage>/checkpoints/best.weights.h5
    # (tfkd translate/export --weights); the stage's student is still the last (or average_last)
    keep_best: Optional[KeepBestSpec] = None
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
    average_last: Optional[PositiveInt] = None

    @pydantic.model_validator(mode="after")
    def _average_what_is_kept(self):
        if self.average_last is not None and self.early_stop is not None:
            raise ValueError("give average_last or early_stop, not both (one decides which weights are the student)")
        if self.keep_best is not None and self.early_stop is not None:
            raise ValueError("give keep_best or early_stop, not both (early_stop keeps the best by its metric)")
        return self
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"
    # start from the student weights another train stage saved (e.g. a pre-distilled student)
    init_from: Optional[str] = None
    # the learning rate: inverse_sqrt (Vaswani et al.: learning_rate * hidden_dim^-0.5 *
    # min(step^-0.5, step * warmup_steps^-1.5)) or linear (BERT fine-tuning: warm-up to
    # learning_rate over warmup_steps, then linear decay to 0 at steps)
    schedule: Literal["inverse_sqrt", "linear"] = "inverse_sqrt"


# export.format of the student's trained weights and config alone (tfkd.exporters.adapters), which
# export.adapters_only: true still selects
ADAPTERS_EXPORTER: Literal["adapters"] = "adapters"


class ExportSpec(_Strict):
    model_name: Optional[str] = None
    version: PositiveInt = 1
    # the registered exporter that writes it (tfkd list exporter): saved_model, a SavedModel that
    # takes raw text; adapters, the student's trained weights and config alone (a student built on
    # frozen pretrained models, such as AB-Net's adapters)
    format: str = "saved_model"

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


class Spec(_Strict):
    """A run. ``data``, ``decode`` and ``evaluate`` are validated by the task's schemas and
    ``distill`` by the method's (:func:`load_spec` replaces them with those models)."""

    version: Literal[1]
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    imports: list[str] = []
    run_dir: str = "runs"
    task: Optional[str] = None  # default: the registry's default task
    stages: Optional[list[str]] = None
    data: Any
    teacher: Optional[TeacherSpec] = None
    distill: Any = None
    student: LayerRef
    train: TrainSpec = TrainSpec()
    decode: Any = {}
    evaluate: Any = {}
    export: ExportSpec = ExportSpec()
    # students trained beside the main one, each with a few settings changed:
    # {name: {"distill.gate": "none", ...}} (keys under distill, student, train and decode; a
    # key naming a whole section, such as student, replaces it)
    variants: Optional[dict[str, dict[str, Any]]] = None
    _located: Any = pydantic.PrivateAttr(default=None)
    _spec_dir: Any = pydantic.PrivateAttr(default=None)
    _variants: Any = pydantic.PrivateAttr(default=None)

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
        return self.model_dump(mode="json")


def validate_layer_ref(kind, ref: LayerRef, supplied=()):
    """Check a ``{kind: ..., **kwargs}`` reference against the registry and constructor.

    ``supplied`` names the arguments the builder passes itself (width, heads, dropout...).
    """
    registry.check_kwargs(kind, ref.kind, ref.kwargs, supplied)


# ----------------------------------------------------------------------------- loading


class _DuplicateKey(Exception):
    def __init__(self, path, line, first):
        super().__init__(path)
        self.path, self.line, self.first = path, line, first


def _collect_lines(node, path=(), lines=None):
    """Map every key path in a composed YAML node tree to its 1-based line (a key given twice
    in one mapping raises :class:`_DuplicateKey`: YAML would silently keep the last)."""
    if lines is None:
        lines = {(): node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key_node, value_node in node.value:
            sub = path + (key_node.value,)
            if key_node.value in seen and key_node.tag != "tag:yaml.org,2002:merge":
                raise _DuplicateKey(sub, key_node.start_mark.line + 1, seen[key_node.value])
            seen[key_node.value] = key_node.start_mark.line + 1
            lines[sub] = key_node.start_mark.line + 1
            _collect_lines(value_node, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _collect_lines(item, path + (i,), lines)
    return lines


class _Located:
    """Where each key path came from: a file line or a ``--set`` flag."""

    def __init__(self, path, lines):
        self.path = path
        self.lines = lines
        self.overrides = {}

    def where(self, key_path):
        key_path = tuple(key_path)
        # a key that only --set wrote (--set trian.steps=3: "trian" is unknown) is the flag's
        for keys, assignment in self.overrides.items():
            if keys[:len(key_path)] == key_path and key_path not in self.lines:
                return f"--set {assignment}"
        for n in range(len(key_path), -1, -1):
            prefix = key_path[:n]
            if prefix in self.overrides:
                return f"--set {self.overrides[prefix]}"
            if prefix in self.lines:
                return f"{self.path}:{self.lines[prefix]}"
        return str(self.path)

    def error(self, key_path, message):
        dotted = ".".join(str(k) for k in key_path)
        prefix = f"{self.where(key_path)}: "
        return SpecError(prefix + (f"{dotted}: " if dotted else "") + message)


def _interpolate(value, key_path, located):
    if isinstance(value, dict):
        return {k: _interpolate(v, key_path + (k,), located) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, key_path + (i,), located) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match):
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise located.error(
            key_path,
            f"environment variable {name} is not set and ${{{name}}} has no default "
            f"(write ${{{name}:-value}} to give one)",
        )

    return _ENV_PATTERN.sub(replace, value)


def _apply_override(data, assignment, located):
    if "=" not in assignment:
        raise SpecError(f"--set {assignment}: expected key.path=value")
    dotted, raw = assignment.split("=", 1)
    keys = [int(k) if k.isdigit() else k for k in dotted.strip().split(".")]
    if not all(str(k) for k in keys):
        raise SpecError(f"--set {assignment}: empty key in {dotted!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise SpecError(f"--set {assignment}: value is not valid YAML ({e.problem})") from None
    node = data
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            if not isinstance(key, int) or key >= len(node):
                raise SpecError(f"--set {assignment}: {'.'.join(map(str, keys[:i + 1]))} is not a list index")
            node = node[key]
            continue
        if not isinstance(node, dict):
            raise SpecError(f"--set {assignment}: {'.'.join(map(str, keys[:i]))} is not a mapping")
        if node.get(key) is None:  # absent, or a section the spec leaves empty
            node[key] = {}
        node = node[key]
    last = keys[-1]
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise SpecError(f"--set {assignment}: cannot set {dotted} here")
    located.overrides[tuple(keys)] = assignment.strip()


def _import_user_modules(modules, located, spec_dir):
    for i, module in enumerate(modules or []):
        if not isinstance(module, str):
            raise located.error(("imports", i), f"expected a module name, got {json.dumps(module)}")
        added = False
        if spec_dir not in sys.path:
            sys.path.insert(0, spec_dir)
            added = True
        try:
            if module.endswith(".py"):
                path = module if os.path.isabs(module) else os.path.join(spec_dir, module)
                name = os.path.splitext(os.path.basename(path))[0]
                loader_spec = importlib.util.spec_from_file_location(name, path)
                if loader_spec is None or not os.path.exists(path):
                    raise ModuleNotFoundError(f"no file {path}")
                mod = importlib.util.module_from_spec(loader_spec)
                sys.modules[name] = mod
                loader_spec.loader.exec_module(mod)
            else:
                importlib.import_module(module)
        except (ImportError, SyntaxError) as e:
            raise located.error(("imports", i), f"cannot import {module!r}: {e}") from None
        except (TypeError, ValueError) as e:  # e.g. a registration error
            raise located.error(("imports", i), f"importing {module!r} failed: {e}") from None
        finally:
            if added:
                sys.path.remove(spec_dir)


def _pydantic_message(err):
    kind = err["type"]
    received = err.get("input")
    got = f", got {json.dumps(received, default=str)}"
    if kind == "extra_forbidden":
        return None  # handled by the caller, which knows the valid keys
    if kind == "missing":
        return "missing required key"
    if kind == "literal_error":
        # pydantic writes "'auto', True or False": quoted strings, and other literals bare
        # (a bool as YAML writes it)
        choices = re.findall(r"'([^']*)'|\b(True|False|None|-?\d+(?:\.\d+)?)\b", err["ctx"]["expected"])
        expected = [text or {"True": "true", "False": "false", "None": "null"}.get(bare, bare)
                    for text, bare in choices] or re.split(r", | or ", err["ctx"]["expected"])
        hint = registry.did_you_mean(received, expected)
        return f"expected one of {', '.join(expected)}{got};{hint}".rstrip(";")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected an integer{got}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number{got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false{got}"
    if kind in ("string_type",):
        return f"expected a string{got}"
    if kind in ("list_type",):
        return f"expected a list{got}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping{got}"
    if kind == "greater_than":
        return f"expected a number > {err['ctx']['gt']:g}{got}"
    if kind == "greater_than_equal":
        return f"expected a number >= {err['ctx']['ge']:g}{got}"
    if kind == "less_than":
        return f"expected a number < {err['ctx']['lt']:g}{got}"
    if kind == "less_than_equal":
        return f"expected a number <= {err['ctx']['le']:g}{got}"
    if kind == "string_pattern_mismatch":
        return f"expected letters, digits, '_', '.' or '-'{got}"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind == "too_short":
        least = err["ctx"]["min_length"]
        return f"expected at least {least} item{'s' if least != 1 else ''}{got}"
    return err["msg"][0].lower() + err["msg"][1:] + got


def _model_at(model_cls, loc):
    """The pydantic model class that owns the last key of ``loc`` (for did-you-mean)."""
    current = model_cls
    for key in loc[:-1]:
        if isinstance(key, int):
            continue
        field = getattr(current, "model_fields", {}).get(key)
        if field is None:
            return None
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                current = candidate
                break
        else:
            return None
    return current


def _raise_validation(error, located, schema_root=Spec, loc_prefix=()):
    first = error.errors()[0]
    loc = loc_prefix + tuple(first["loc"])
    if first["type"] == "extra_forbidden":
        owner = _model_at(schema_root, tuple(first["loc"]))
        # keys as a spec writes them (a field may be read by an alias, such as "lambda")
        valid = sorted(f.alias or name for name, f in owner.model_fields.items()) if owner is not None else []
        key = loc[-1]
        message = f'unknown key "{key}";{registry.did_you_mean(key, valid)}'
        if valid:
            message += f" Valid keys: {', '.join(valid)}"
        raise located.error(loc, message.replace(";", "", 1) if message.endswith(";") else message)
    raise located.error(loc, _pydantic_message(first))


def load_spec(path, overrides=(), import_dir=None, check_models=False):
    """Read, interpolate, override, import and validate ``path``; a :class:`Spec`.

    ``imports`` are resolved relative to ``import_dir`` (default: the spec's folder). With
    ``check_models`` (``tfkd validate``, ``run``, ``config``), each local folder or package a
    model reference names must exist here (not when a finished run's spec is reopened:
    exporting needs no teacher).
    """
    token = _CHECK_MODELS.set(check_models)
    try:
        return _load_spec(str(path), overrides, import_dir)
    finally:
        _CHECK_MODELS.reset(token)


def _load_spec(path, overrides, import_dir):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SpecError(f"{path}: cannot read spec ({e.strerror})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else "?"
        raise SpecError(f"{path}:{line}: invalid YAML: {e.problem}") from None
    if data is None:
        raise SpecError(f"{path}:1: the spec is empty")
    if not isinstance(data, dict):
        raise SpecError(f"{path}:1: expected a mapping at the top of the spec, got {type(data).__name__}")
    try:
        located = _Located(path, _collect_lines(node))
    except _DuplicateKey as e:
        dotted = ".".join(str(k) for k in e.path)
        raise SpecError(f"{path}:{e.line}: {dotted}: duplicate key (first given at line {e.first}; "
                        "YAML would keep only the last)") from None
    data = copy.deepcopy(data)
    for assignment in overrides:
        _apply_override(data, assignment, located)
    data = _interpolate(data, (), located)

    if not isinstance(data.get("imports", []), list):
        raise located.error(("imports",), f"expected a list of modules, got {json.dumps(data['imports'])}")
    _import_user_modules(data.get("imports"), located, import_dir or os.path.dirname(os.path.abspath(path)))
    if "distill" in data and not data["distill"]:
        raise located.error(("distill",), "empty section: give method: NAME, or remove distill for "
                                          "training on the references alone")

    try:
        spec = Spec.model_validate(data)
    except pydantic.ValidationError as e:
        _raise_validation(e, located)
    spec = _validate_sections(spec, located)
    spec._variants = _validate_variants(spec, data, located)
    _validate_targets(spec, located)
    _validate_stage_list(spec, located)
    spec._located = located
    spec._spec_dir = import_dir or os.path.dirname(os.path.abspath(path))
    return spec


VARIANT_ROOTS = ("distill", "student", "train", "decode")


class _VariantLocated(_Located):
    """Errors in a variant's spec point at the variant's line (or the line of the setting)."""

    def __init__(self, base, name, set_keys):
        super().__init__(base.path, base.lines)
        self.overrides = dict(base.overrides)
        self.name = name
        self.set_keys = set_keys  # key path tuple -> the dotted key as the spec writes it

    def error(self, key_path, message):
        key_path = tuple(key_path)
        for n in range(len(key_path), 0, -1):
            if key_path[:n] in self.set_keys:
                where = self.where(("variants", self.name, self.set_keys[key_path[:n]]))
                break
        else:
            where = self.where(("variants", self.name))
        dotted = ".".join(str(k) for k in key_path)
        return SpecError(f"{where}: variants.{self.name}: " + (f"{dotted}: " if dotted else "") + message)


def _validate_variants(spec, data, located):
    """``{name: Spec}`` of the spec's ``variants``, each validated as a whole spec."""
    from tfkd.stage_names import TARGETS_STAGE, TEACHER_TARGETS, stage_names

    variants = {}
    main_stages = stage_names(spec.model_copy(update={"variants": None}))
    for name, settings in (spec.variants or {}).items():
        if (not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or name in main_stages or name.endswith("_evaluate")
                or name == TARGETS_STAGE):
            raise located.error(("variants", name), "expected a new stage name (letters, digits, '_', '.', '-'; "
                                                    f"not ending in _evaluate; not one of {', '.join(main_stages)})")
        if not settings:
            raise located.error(("variants", name), "expected settings to change, e.g. {distill.alpha: 0}")
        variant = copy.deepcopy({k: v for k, v in data.items() if k not in ("variants", "stages")})
        if isinstance(variant.get("distill"), dict):  # a variant trains on the references unless it says so
            for key in TARGET_KEYS:
                variant["distill"].pop(key, None)
        set_keys = {}
        for dotted, value in settings.items():
            keys = tuple(dotted.split("."))
            if keys[0] not in VARIANT_ROOTS or not all(keys):
                raise located.error(("variants", name, dotted), f"expected a key under {', '.join(VARIANT_ROOTS)} "
                                                               "(data, teacher and evaluation are the run's)")
            node = variant
            for key in keys[:-1]:
                if not isinstance(node.get(key), dict):
                    node[key] = {}
                node = node[key]
            node[keys[-1]] = value
            set_keys[keys] = dotted
        distill = variant.get("distill")
        if isinstance(distill, dict) and distill.get("targets") == TEACHER_TARGETS and "targets_from" not in distill \
                and spec.distill.targets_from is not None:
            distill["targets_from"] = spec.distill.targets_from  # the run's teacher
        variant_located = _VariantLocated(located, name, set_keys)
        try:
            resolved = Spec.model_validate(variant)
        except pydantic.ValidationError as e:
            _raise_validation(e, variant_located)
        resolved = _validate_sections(resolved, variant_located)
        variant_method = registry.lookup("method", resolved.method)
        if resolved.method == spec.method:  # the run adds the method stages its variants need
            for key_path, message in variant_method.check_variant(spec, resolved):
                raise variant_located.error(key_path, message)
            variants[name] = resolved
            continue
        own = set(variant_method.stage_names_for(resolved.distill, registry.lookup("task", resolved.task)))
        missing = own - set(main_stages)
        if missing:
            raise located.error(("variants", name), f"method {resolved.method} needs stage(s) "
                                                    f"{', '.join(sorted(missing))}, which method {spec.method} does "
                                                    "not run; make it the run's method instead")
        variants[name] = resolved
    return variants


def _section(schema, value, key, located):
    if value is not None and not isinstance(value, dict):
        raise located.error((key,), f"expected a mapping, got {json.dumps(value, default=str)}")
    try:
        return schema.model_validate(value or {})
    except pydantic.ValidationError as e:
        _raise_validation(e, located, schema, (key,))


def _lookup(kind, name, key_path, located):
    try:
        return registry.lookup(kind, name)
    except ValueError as e:
        raise located.error(key_path, str(e)) from None


def _validate_sections(spec, located):
    """Validate the task's and the method's sections with their own schemas (one-line errors
    with file:line), then the student and the stage list."""
    task_name = spec.task if spec.task is not None else registry.default("task")
    task = _lookup("task", task_name, ("task",), located)
    distill = spec.distill if spec.distill is not None else {"method": registry.default("method")}
    if not isinstance(distill, dict):
        raise located.error(("distill",), f"expected a mapping, got {json.dumps(distill, default=str)}")
    method_name = distill.get("method", registry.default("method"))
    if not isinstance(method_name, str):
        raise located.error(("distill", "method"), f"expected a method name, got {json.dumps(method_name)}")
    method = _lookup("method", method_name, ("distill", "method"), located)
    spec = spec.model_copy(update={
        "task": task_name,
        "data": _section(task.data_schema, spec.data, "data", located),
        "decode": _section(task.decode_schema, spec.decode, "decode", located),
        "evaluate": _section(task.evaluate_schema, spec.evaluate, "evaluate", located),
        "distill": _section(method.spec_schema, dict(distill, method=method_name), "distill", located),
    })
    for key_path, message in [*task.check(spec), *method.check(spec)]:
        raise located.error(key_path, message)

    try:
        schema = registry.schema("student", spec.student.kind)
    except ValueError as e:
        raise located.error(("student", "kind"), str(e)) from None
    if schema is None:
        try:
            registry.check_kwargs("student", spec.student.kind, spec.student.kwargs, task.student_arguments)
        except ValueError as e:
            raise located.error(("student",), str(e)) from None
    else:
        try:
            config = schema.model_validate(spec.student.kwargs)
        except pydantic.ValidationError as e:
            _raise_validation(e, located, schema, ("student",))
        for field in ("encoder_layer", "decoder_layer"):
            ref = getattr(config, field, None)
            if ref is not None:
                try:
                    validate_layer_ref(field, ref, getattr(schema, "layer_arguments", ()))
                except ValueError as e:
                    raise located.error(("student", field, "kind"), str(e)) from None

    available = stage_names(spec)
    if spec.train.init_from is not None and spec.train.init_from not in available:
        raise located.error(("train", "init_from"), f"unknown stage {json.dumps(spec.train.init_from)}; "
                                                    f"Choices: {', '.join(available)}")
    return spec


def _validate_stage_list(spec, located):
    available = stage_names(spec)
    for i, name in enumerate(spec.stages or []):
        if name not in available:
            raise located.error(("stages", i), f"unknown stage {json.dumps(name)} for task {spec.task} and "
                                               f"method {spec.method};{registry.did_you_mean(name, available)} "
                                               f"Choices: {', '.join(available)}")


# the distill keys choosing a train stage's targets (see tfkd.methods.MethodSpec)
TARGET_KEYS = ("targets", "targets_from")


def _targets_error(located, variant, key, message):
    """A one-line error at ``distill.<key>`` of the main spec or of variant ``variant``."""
    if variant is None:
        return located.error(("distill", key), message)
    for path in (("variants", variant, f"distill.{key}"), ("variants", variant, "distill", key),
                 ("variants", variant, "distill")):
        if path in located.lines:
            where = located.where(path)
            break
    else:
        where = located.where(("variants", variant))
    return SpecError(f"{where}: variants.{variant}.distill.{key}: {message}")


def _validate_targets(spec, located):
    """``distill.targets``/``targets_from`` of the run's train stages: teacher_beam needs a source;
    one source per run; a train stage of this run that runs before every stage training on its
    translations (or an exported model); a task and methods that can train on them."""
    from tfkd.stage_names import (TARGETS_STAGE, TEACHER_TARGETS, is_model_path, teacher_targets_users,
                                  variant_and_baseline_names)

    for variant, own in [(None, spec), *((name, spec.variant(name)) for name in spec.variants or {})]:
        section = own.distill
        if section.targets == TEACHER_TARGETS and section.targets_from is None:
            raise _targets_error(located, variant, "targets", "teacher_beam needs distill.targets_from: the train "
                                 "stage (baseline or a variant) or the exported model version folder whose "
                                 "beam-search translations of the training sources replace the references")
        if section.targets != TEACHER_TARGETS and section.targets_from is not None:
            raise _targets_error(located, variant, "targets_from", "applies with targets: teacher_beam only")
    users = teacher_targets_users(spec)
    if not users:
        return
    problem = registry.lookup("task", spec.task).teacher_targets_problem(spec)
    if problem:
        raise _targets_error(located, users[0][0], "targets", problem)
    for variant, own in users:
        problem = registry.lookup("method", own.method).teacher_targets_problem(own.distill)
        if problem:
            raise _targets_error(located, variant, "targets", f"method {own.method}: {problem}")
    first, source = users[0][0], users[0][1].distill.targets_from
    for variant, own in users[1:]:
        if own.distill.targets_from != source:
            named = "distill.targets_from" if first is None else f"variants.{first}"
            raise _targets_error(located, variant, "targets_from",
                                 f"a run translates its training split with one model: {named} says "
                                 f"{json.dumps(source)}, this says {json.dumps(own.distill.targets_from)}")
    if is_model_path(source):
        return
    candidates = variant_and_baseline_names(spec)
    if source not in candidates:
        available = stage_names(spec)
        if source == "train":
            message = "stage train cannot translate for itself"
        elif source in available:
            message = f"stage {json.dumps(source)} is not a train stage that runs before train"
        else:
            hint = registry.did_you_mean(source, candidates).strip()
            message = f"unknown stage {json.dumps(source)}" + (f" ({hint})" if hint else "")
        choices = ", ".join(candidates) if candidates else "none in this run"
        raise _targets_error(located, first, "targets_from",
                             f"{message}; expected a train stage whose student translates (train stages "
                             f"before train: {choices}) or the path of an exported model version folder "
                             "(<run>/export/<model>/<version>)")
    names = stage_names(spec)
    at = names.index(TARGETS_STAGE)
    for variant, _ in users:
        if variant is not None and names.index(variant) < at:
            raise _targets_error(located, variant, "targets",
                                 f"variant {variant} would run before {TARGETS_STAGE} (which follows stage "
                                 f"{source}); declare it after {source} in variants, or train it on the "
                                 "references (targets: reference)")


def dump_spec(spec, path):
    """Write the resolved spec (defaults, file and overrides merged) as YAML."""
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec.to_dict(), f, sort_keys=False)
