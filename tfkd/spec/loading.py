"""Reading a spec: YAML with the line of every key, ``--set`` overrides, ``${VAR}``
interpolation, ``imports:`` of the user's modules, then validation; and writing the resolved spec
back (:func:`dump_spec`, whose output stage keys hash)."""

import copy
import importlib
import importlib.util
import json
import os
import re
import sys

import pydantic
import yaml

from tfkd.spec.checks import _validate_sections, _validate_stage_list
from tfkd.spec.messages import SpecError, _Located, raise_mistakes, validation_mistakes
from tfkd.spec.schema import _CHECK_MODELS, Spec
from tfkd.spec.sweep import drop_the_specs_own_point, expand_sweep
from tfkd.spec.targets import _validate_targets
from tfkd.spec.variants import _validate_plan, _validate_variants

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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


def _interpolate(value, key_path, located):
    if isinstance(value, dict):
        return {k: _interpolate(v, key_path + (k,), located) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, key_path + (i,), located) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match):
        # as bash's ${NAME:-default}: an empty value is no value (an empty TFKD_DATA_DIR would
        # otherwise point data.dir at the root of the file system)
        name, default = match.group(1), match.group(2)
        if os.environ.get(name):
            return os.environ[name]
        if default is not None:
            return default
        state = "is empty" if name in os.environ else "is not set"
        raise located.error(
            key_path,
            f"environment variable {name} {state} and ${{{name}}} has no default "
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
                raise SpecError(f"--set {assignment}: {'.'.join(map(str, keys[: i + 1]))} is not a list index")
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


def _interrupted(error):
    """Whether ``error`` came of a Ctrl-C: a C extension whose initialisation a
    ``KeyboardInterrupt`` cut short raises ``ImportError("initialization failed")`` from it."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


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
            if _interrupted(e):  # Ctrl-C inside an extension's initialisation (TensorFlow's)
                raise KeyboardInterrupt from None
            raise located.error(("imports", i), f"cannot import {module!r}: {e}") from None
        except (TypeError, ValueError) as e:  # e.g. a registration error
            raise located.error(("imports", i), f"importing {module!r} failed: {e}") from None
        finally:
            if added:
                sys.path.remove(spec_dir)


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
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SpecError(f"{path}: cannot read spec ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError(
            f"{path}:{line}: not valid UTF-8 ({e.reason} at byte {e.start}); save the spec as UTF-8"
        ) from None
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
        raise SpecError(
            f"{path}:{e.line}: {dotted}: duplicate key (first given at line {e.first}; YAML would keep only the last)"
        ) from None
    data = copy.deepcopy(data)
    for assignment in overrides:
        _apply_override(data, assignment, located)
    data = _interpolate(data, (), located)

    if not isinstance(data.get("imports", []), list):
        raise located.error(("imports",), f"expected a list of modules, got {json.dumps(data['imports'])}")
    _import_user_modules(data.get("imports"), located, import_dir or os.path.dirname(os.path.abspath(path)))
    if "distill" in data and not data["distill"]:
        raise located.error(
            ("distill",), "empty section: give method: NAME, or remove distill for training on the references alone"
        )

    swept = expand_sweep(data, located)
    spec, mistakes = _validate_top_level(data, located)
    spec = _validate_sections(spec, located, mistakes)
    spec._variants = _validate_variants(spec, data, located, swept)
    if spec.sweep is not None:
        spec = drop_the_specs_own_point(spec, swept)
    _validate_targets(spec, located)
    _validate_plan(spec, located)
    _validate_stage_list(spec, located)
    spec._located = located
    spec._spec_dir = import_dir or os.path.dirname(os.path.abspath(path))
    return spec


def _validate_top_level(data, located):
    """``(spec, mistakes)``: the top level validated; with mistakes, the spec is that of
    ``data`` without the keys at fault, so that the sections' own mistakes are found too
    (raises at once when that is not a spec either: a required key is missing)."""
    try:
        return Spec.model_validate(data), {}
    except pydantic.ValidationError as e:
        mistakes = validation_mistakes(e, located)
    remaining = copy.deepcopy(data)
    for loc in mistakes:
        parent = remaining
        try:  # a union's member names in a loc ('stages', 'list[str]', 0) are not keys: skip those
            for key in loc[:-1]:
                parent = parent[key]
        except (LookupError, TypeError):
            continue
        if isinstance(parent, dict):
            parent.pop(loc[-1], None)
    try:
        return Spec.model_validate(remaining), mistakes
    except (pydantic.ValidationError, LookupError, TypeError):
        raise_mistakes(mistakes, located)


def dump_spec(spec, path):
    """Write the resolved spec (defaults, file and overrides merged) as YAML."""
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec.to_dict(), f, sort_keys=False)
