"""One-line spec errors: :class:`SpecError`, where a key path was written (a file line or a
``--set`` flag) and pydantic's validation errors said as ``file:line: key.path: message``."""

import json
import re

from pydantic import BaseModel

from tfkd import registry
from tfkd.errors import SpecError  # noqa: E402  (re-exported: tfkd.spec.SpecError)
from tfkd.spec.schema import Spec


class _Located:
    """Where each key path came from: a file line or a ``--set`` flag."""

    def __init__(self, path, lines):
        self.path = path
        self.lines = lines
        self.overrides = {}

    def source(self, key_path):
        """``("file", line)`` or ``("flag", assignment)``: where ``key_path`` was written."""
        key_path = tuple(key_path)
        # a key that only --set wrote (--set trian.steps=3: "trian" is unknown) is the flag's
        for keys, assignment in self.overrides.items():
            if keys[: len(key_path)] == key_path and key_path not in self.lines:
                return "flag", assignment
        # a flag replaces everything under its key, the file's lines there included
        prefixes = [key_path[:n] for n in range(len(key_path), -1, -1)]
        for prefix in prefixes:
            if prefix in self.overrides:
                return "flag", self.overrides[prefix]
        for prefix in prefixes:
            if prefix in self.lines:
                return "file", self.lines[prefix]
        return "file", 0

    def where(self, key_path):
        kind, value = self.source(key_path)
        if kind == "flag":
            return f"--set {value}"
        return f"{self.path}:{value}" if value else str(self.path)

    def order(self, key_path):
        """A sort key: the file's lines in order, then the flags in the order given."""
        kind, value = self.source(key_path)
        return (0, value) if kind == "file" else (1, list(self.overrides.values()).index(value))

    def error(self, key_path, message):
        dotted = ".".join(str(k) for k in key_path)
        prefix = f"{self.where(key_path)}: "
        return SpecError(prefix + (f"{dotted}: " if dotted else "") + message)


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
        expected = [
            text or {"True": "true", "False": "false", "None": "null"}.get(bare, bare) for text, bare in choices
        ] or re.split(r", | or ", err["ctx"]["expected"])
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
    bounds = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<")}
    bounds["less_than_equal"] = ("le", "<=")
    if kind in bounds:
        key, sign = bounds[kind]
        bound = err["ctx"][key]  # an integer bound in full (2**32, not 4.29497e+09)
        return f"expected a number {sign} {bound if isinstance(bound, int) else format(bound, 'g')}{got}"
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


def validation_mistakes(error, located, schema_root=Spec, loc_prefix=()):
    """``{key path: one-line message}`` for every mistake pydantic found."""
    mistakes = {}
    for err in error.errors():
        loc = loc_prefix + tuple(err["loc"])
        if loc not in mistakes:  # a union's alternatives each report the same key
            mistakes[loc] = _validation_line(err, loc, located, schema_root)
    return mistakes


def raise_mistakes(mistakes, located):
    """One :class:`SpecError` of every mistake, one line each, in the order the spec file and
    its ``--set`` flags give them."""
    if mistakes:
        raise SpecError("\n".join(mistakes[loc] for loc in sorted(mistakes, key=located.order)))


def _raise_validation(error, located, schema_root=Spec, loc_prefix=()):
    raise_mistakes(validation_mistakes(error, located, schema_root, loc_prefix), located)


def _validation_line(err, loc, located, schema_root):
    if err["type"] == "extra_forbidden":
        owner = _model_at(schema_root, tuple(err["loc"]))
        # keys as a spec writes them (a field may be read by an alias, such as "lambda")
        valid = sorted(f.alias or name for name, f in owner.model_fields.items()) if owner is not None else []
        key = loc[-1]
        message = f'unknown key "{key}";{registry.did_you_mean(key, valid)}'
        if valid:
            message += f" Valid keys: {', '.join(valid)}"
        return str(located.error(loc, message.replace(";", "", 1) if message.endswith(";") else message))
    return str(located.error(loc, _pydantic_message(err)))
