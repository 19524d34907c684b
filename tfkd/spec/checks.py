"""Validation across sections: the task's and the method's sections by their own schemas
(looked up in the registry), the student, ``train.init_from`` and the ``stages`` list."""

import json

import pydantic

from tfkd import registry
from tfkd.context import RunContext
from tfkd.errors import SpecError
from tfkd.plan import plan_run
from tfkd.spec.messages import raise_mistakes, validation_mistakes
from tfkd.spec.schema import validate_layer_ref


def _section(schema, value, key, located, mistakes):
    """``value`` validated by ``schema``; its mistakes go into ``mistakes`` (then None)."""
    if value is not None and not isinstance(value, dict):
        mistakes[(key,)] = str(located.error((key,), f"expected a mapping, got {json.dumps(value, default=str)}"))
        return None
    try:
        return schema.model_validate(value or {})
    except pydantic.ValidationError as e:
        mistakes.update(validation_mistakes(e, located, schema, (key,)))
        return None


def _lookup(kind, name, key_path, located):
    try:
        return registry.lookup(kind, name)
    except ValueError as e:
        raise located.error(key_path, str(e)) from None


def _validate_sections(spec, located, earlier=None):
    """Validate the task's and the method's sections with their own schemas and the student
    (one line with file:line for each mistake, ``earlier``'s among them), then what needs
    them all: the task's and method's checks, ``train.init_from``."""
    task_name = spec.task if spec.task is not None else registry.default("task")
    task = _lookup("task", task_name, ("task",), located)
    distill = spec.distill if spec.distill is not None else {"method": registry.default("method")}
    if not isinstance(distill, dict):
        raise located.error(("distill",), f"expected a mapping, got {json.dumps(distill, default=str)}")
    method_name = distill.get("method", registry.default("method"))
    if not isinstance(method_name, str):
        raise located.error(("distill", "method"), f"expected a method name, got {json.dumps(method_name)}")
    method = _lookup("method", method_name, ("distill", "method"), located)
    mistakes = dict(earlier or {})
    sections = {
        "data": _section(task.data_schema, spec.data, "data", located, mistakes),
        "decode": _section(task.decode_schema, spec.decode, "decode", located, mistakes),
        "evaluate": _section(task.evaluate_schema, spec.evaluate, "evaluate", located, mistakes),
        "distill": _section(method.spec_schema, dict(distill, method=method_name), "distill", located, mistakes),
    }
    try:
        _validate_student(spec, task, located)
    except pydantic.ValidationError as e:
        mistakes.update(validation_mistakes(e, located, registry.schema("student", spec.student.kind), ("student",)))
    except SpecError as e:
        mistakes[("student",)] = str(e)
    raise_mistakes(mistakes, located)
    spec = spec.model_copy(update={"task": task_name, **sections})
    for key_path, message in [*task.check(spec), *method.check(RunContext(spec))]:
        raise located.error(key_path, message)
    available = plan_run(spec).names
    if spec.train.init_from is not None and spec.train.init_from not in available:
        raise located.error(
            ("train", "init_from"), f"unknown stage {json.dumps(spec.train.init_from)}; Choices: {', '.join(available)}"
        )
    return spec


def _validate_student(spec, task, located):
    """The student's settings by its kind's schema (pydantic's error is the caller's to say)
    or, for a kind without one, by its constructor's arguments; its layer references."""
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
        config = schema.model_validate(spec.student.kwargs)  # its mistakes: the caller's
        for field in ("encoder_layer", "decoder_layer"):
            ref = getattr(config, field, None)
            if ref is not None:
                try:
                    validate_layer_ref(field, ref, getattr(schema, "layer_arguments", ()))
                except ValueError as e:
                    raise located.error(("student", field, "kind"), str(e)) from None


def _validate_stage_list(spec, located):
    available = plan_run(spec).names
    for i, name in enumerate(spec.stages or []):
        if name not in available:
            raise located.error(
                ("stages", i),
                f"unknown stage {json.dumps(name)} for task {spec.task} and "
                f"method {spec.method};{registry.did_you_mean(name, available)} "
                f"Choices: {', '.join(available)}",
            )
