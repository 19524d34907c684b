"""``variants``: students trained beside the main one with a few settings changed, each
resolved and validated as a whole spec; errors point at the variant's line (or its setting's)."""

import copy
import re

import pydantic

from tfkd import registry
from tfkd.context import RunContext
from tfkd.plan import plan_run
from tfkd.spec.checks import _validate_sections
from tfkd.spec.messages import SpecError, _Located, _raise_validation
from tfkd.spec.schema import Spec
from tfkd.spec.targets import TARGET_KEYS, TEACHER_TARGETS

VARIANT_ROOTS = ("distill", "student", "train", "decode")


class _VariantLocated(_Located):
    """Errors in a variant's spec point at the variant's line (or the line of the setting)."""

    def __init__(self, base, name, set_keys, swept=False):
        super().__init__(base.path, base.lines)
        self.overrides = dict(base.overrides)
        self.name = name
        self.set_keys = set_keys  # key path tuple -> the dotted key as the spec writes it
        self.swept = swept  # a point of the spec's sweep: errors point at its grid

    def error(self, key_path, message):
        key_path = tuple(key_path)
        root = ("sweep", "grid") if self.swept else ("variants", self.name)
        for n in range(len(key_path), 0, -1):
            if key_path[:n] in self.set_keys:
                where = self.where((*root, self.set_keys[key_path[:n]]))
                break
        else:
            where = self.where(root)
        dotted = ".".join(str(k) for k in key_path)
        student = f"sweep: student {self.name}" if self.swept else f"variants.{self.name}"
        return SpecError(f"{where}: {student}: " + (f"{dotted}: " if dotted else "") + message)


def _validate_variants(spec, data, located, swept=()):
    """``{name: Spec}`` of the spec's ``variants``, each validated as a whole spec (``swept``:
    the names of those the spec's ``sweep`` expanded into)."""
    variants = {}
    main_stages = plan_run(spec.model_copy(update={"variants": None})).names
    task_stages = registry.lookup("task", spec.task).stage_names
    for name, settings in (spec.variants or {}).items():
        _check_variant_name(name, settings, main_stages, task_stages, located)
        variant, set_keys = _variant_data(spec, data, name, settings, located)
        variant_located = _VariantLocated(located, name, set_keys, swept=name in swept)
        try:
            resolved = Spec.model_validate(variant)
        except pydantic.ValidationError as e:
            _raise_validation(e, variant_located)
        resolved = _validate_sections(resolved, variant_located)
        resolved._located = variant_located  # where the plan's checks point (_validate_plan)
        variant_method = registry.lookup("method", resolved.method)
        if resolved.method == spec.method:  # the run adds the method stages its variants need
            for key_path, message in variant_method.check_variant(RunContext(spec), resolved):
                raise variant_located.error(key_path, message)
        else:
            missing = {s.name for s in variant_method.plan_stages(RunContext(resolved))} - set(main_stages)
            if missing:
                raise located.error(
                    ("variants", name),
                    f"method {resolved.method} needs stage(s) "
                    f"{', '.join(sorted(missing))}, which method {spec.method} does "
                    "not run; make it the run's method instead",
                )
        variants[name] = resolved
    return variants


def _check_variant_name(name, settings, main_stages, task_stages, located):
    """A variant is a new stage name with settings to change."""
    if (
        not re.fullmatch(r"[A-Za-z0-9_.\-]+", name)
        or name in main_stages
        or name.endswith("_evaluate")
        or re.search(r"-s\d+$", name)
        or name in task_stages
    ):
        raise located.error(
            ("variants", name),
            "expected a new stage name (letters, digits, '_', '.', '-'; "
            "not ending in _evaluate or -sN, the names of train.seeds' stages; "
            f"not one of {', '.join(main_stages)})",
        )
    if not settings:
        raise located.error(("variants", name), "expected settings to change, e.g. {distill.alpha: 0}")


def _variant_data(spec, data, name, settings, located):
    """``(the spec's data with variant ``name``'s dotted ``settings`` applied, {key path: the
    dotted key as written})``: on the references unless it sets targets itself, a teacher's
    targets from the run's teacher unless it names another."""
    variant = copy.deepcopy({k: v for k, v in data.items() if k not in ("variants", "stages")})
    if isinstance(variant.get("distill"), dict):  # a variant trains on the references unless it says so
        for key in TARGET_KEYS:
            variant["distill"].pop(key, None)
    set_keys = {}
    for dotted, value in settings.items():
        keys = tuple(dotted.split("."))
        if keys[0] not in VARIANT_ROOTS or not all(keys):
            raise located.error(
                ("variants", name, dotted),
                f"expected a key under {', '.join(VARIANT_ROOTS)} (data, teacher and evaluation are the run's)",
            )
        node = variant
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
        set_keys[keys] = dotted
    distill = variant.get("distill")
    if (
        isinstance(distill, dict)
        and distill.get("targets") == TEACHER_TARGETS
        and "targets_from" not in distill
        and spec.distill.targets_from is not None
    ):
        distill["targets_from"] = spec.distill.targets_from  # the run's teacher
    return variant, set_keys


def _validate_plan(spec, located):
    """The run's method checks the whole plan (:meth:`tfkd.methods.Method.check_plan`); each
    problem is the one-line error at its variant's setting (or the run's)."""
    context = RunContext(spec)
    for variant, key_path, message in context.method.check_plan(context, plan_run(spec)):
        where = located if variant is None else (spec.variant(variant)._located or located)
        raise where.error(key_path, message)
