"""Specs: YAML in, validated objects out.

Resolution is layered (OpenNMT-tf style): schema defaults, then the spec file, then
``--set key.path=value`` overrides. ``${VAR}`` and ``${VAR:-default}`` in string values are
replaced from the environment. Every problem is reported as one line,
``file:line: key.path: what was expected, got what``, through :class:`SpecError`.

The modules, each importing only those before it: :mod:`~tfkd.spec.schema` (the pydantic
models and field types), :mod:`~tfkd.spec.messages` (:class:`SpecError`, where a key was
written, pydantic's errors as one line), :mod:`~tfkd.spec.checks` (the task's and the method's
sections, the student, the stage list), :mod:`~tfkd.spec.targets` (sequence-level KD's
``distill.targets``/``targets_from``, checked by the task), :mod:`~tfkd.spec.variants` and
:mod:`~tfkd.spec.loading` (YAML with line numbers, ``--set``, ``${VAR}``, ``imports:``,
:func:`load_spec`, :func:`dump_spec`). None imports TensorFlow or Keras.
"""

from tfkd.spec.loading import dump_spec, load_spec
from tfkd.spec.messages import SpecError, _pydantic_message  # noqa: F401 (tfkd.cli says --set errors with it)
from tfkd.spec.schema import (
    ADAPTERS_EXPORTER,
    SPEC_VERSION,
    EarlyStopSpec,
    ExportSpec,
    KeepBestSpec,
    LayerRef,
    LocalPath,
    ModelReference,
    Seed,
    Spec,
    Strict,
    TeacherSpec,
    TokenizerSpec,
    TrainSpec,
    package_folder,
    validate_layer_ref,
)
from tfkd.spec.targets import TARGET_KEYS, TEACHER_TARGETS, targets_error
from tfkd.spec.variants import VARIANT_ROOTS

__all__ = [
    "ADAPTERS_EXPORTER",
    "SPEC_VERSION",
    "TARGET_KEYS",
    "TEACHER_TARGETS",
    "VARIANT_ROOTS",
    "EarlyStopSpec",
    "ExportSpec",
    "KeepBestSpec",
    "LayerRef",
    "LocalPath",
    "ModelReference",
    "Seed",
    "Spec",
    "SpecError",
    "Strict",
    "TeacherSpec",
    "TokenizerSpec",
    "TrainSpec",
    "dump_spec",
    "load_spec",
    "package_folder",
    "targets_error",
    "validate_layer_ref",
]
