"""A run's stage plan, computed once by :func:`plan_run`; everything else reads it.

The stages of a run are, in order: ``vocab``; the stages the method plans before training (a
teacher's fine-tuning and cache, say: :meth:`tfkd.methods.Method.plan_stages`); ``baseline``
and ``baseline_evaluate`` (the same student trained by the default method, for comparison;
offered when the method is not already that and says the comparison means something:
:attr:`tfkd.methods.Method.compares_with_baseline`); each variant's train and evaluate stages
(the spec's ``variants``); ``train``, ``evaluate`` and ``export``. The task may then add
stages of its own (:meth:`tfkd.tasks.Task.extend_plan`: the translation task's
``teacher_translations`` for sequence-level KD), and the method stages that go among the train
stages (:meth:`tfkd.methods.Method.extend_plan`: a cache of a teacher trained as a student of the
run).

Each :class:`PlannedStage` knows its name, the stages it reads and how to build the stage
object (imported when the runner first needs it), so spec validation, ``tfkd config``,
``--stages`` and the runner all read the same plan without importing TensorFlow. Nothing here
names a method or a task.
"""

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from tfkd import registry
from tfkd.context import RunContext
from tfkd.errors import SpecError


@dataclasses.dataclass
class PlannedStage:
    """One stage of a plan.

    ``build``: the :class:`tfkd.runner.Stage` object, or how to make it: a callable of no
    arguments or ``"module:Class"`` (called with ``kwargs``), imported when the runner first
    needs the stage. ``role``: ``vocab``, ``method`` (a stage the method plans), ``train``,
    ``evaluate``, ``export`` or ``task`` (a stage the task adds). ``default``: whether ``tfkd
    run`` runs it when neither the spec nor ``--stages`` lists stages. ``variant``: the variant
    whose view of the spec a train or evaluate stage uses; ``method``: a train stage's method;
    ``seed``: the seed of a train or evaluate stage copied for one of ``train.seeds`` (see
    :func:`seed_stage_name`); ``comes_with``: the stage whose request brings this one (a
    seed's copy comes with its stage; a sweep's students and ``select`` with ``train`` and
    ``evaluate``).
    """

    name: str
    depends: tuple = ()
    build: Callable[[], Any] | str | Any = None
    kwargs: dict = dataclasses.field(default_factory=dict)
    role: str = "method"
    default: bool = True
    variant: str | None = None
    method: str | None = None
    seed: int | None = None  # a train or evaluate stage of one of train.seeds after the first
    comes_with: str | None = None  # a stage whose request (spec stages, --stages) brings this one

    def make(self):
        """The stage object (built once)."""
        if "_stage" not in self.__dict__:
            build = self.build
            if isinstance(build, str):
                module, _, attribute = build.partition(":")
                build = getattr(importlib.import_module(module), attribute)
            stage = build(**self.kwargs) if callable(build) else build
            if stage.name is None:
                stage.name = self.name
            self.__dict__["_stage"] = stage
        return self.__dict__["_stage"]


BASELINE = "baseline"  # the train stage of the student the default method trains, for comparison
MAIN = "train"  # the train stage of the spec's own student


def evaluate_stage_name(train):
    """The name of the evaluate stage of train stage ``train`` (``evaluate`` for ``train``,
    ``NAME_evaluate`` for the others)."""
    return "evaluate" if train == MAIN else f"{train}_evaluate"


@dataclasses.dataclass(frozen=True)
class PlannedStudent:
    """A student the plan trains: ``name`` (its train stage for its first seed), ``evaluate``
    (that seed's evaluate stage), ``role`` (``baseline``, ``variant`` or ``student``: the
    spec's own), ``variant`` (the variant whose view of the spec it uses, if any) and
    ``seeds``: ``(seed, train stage, evaluate stage)`` for each of its seeds, the first seed's
    stages (which keep their names) first."""

    name: str
    evaluate: str
    role: str
    variant: str | None
    seeds: tuple


class RunPlan:
    """The ordered stages of a run (see the module's docstring)."""

    def __init__(self, stages):
        self._stages = list(stages)  # a variant named like another stage: spec validation says so

    # ------------------------------------------------------------------ reading

    @property
    def names(self):
        return [s.name for s in self._stages]

    def __iter__(self):
        return iter(self._stages)

    def __contains__(self, name):
        return any(s.name == name for s in self._stages)

    def __getitem__(self, name):
        for stage in self._stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def dependencies(self, name):
        return self[name].depends

    def with_role(self, *roles):
        return [s.name for s in self._stages if s.role in roles]

    def students(self, spec):
        """Every :class:`PlannedStudent` of the plan (the baseline, the variants, the spec's own,
        in plan order), with its seeds' stages; ``spec`` is the run's."""
        evaluates = {s.kwargs.get("train_stage"): s.name for s in self._stages if s.role == "evaluate"}
        students = []
        for train in self._stages:
            if train.role != "train" or train.seed is not None:
                continue
            own = (spec._variants or {}).get(train.variant, spec) if train.variant is not None else spec
            first = (own.train.seeds or [own.train.seed])[0]
            copies = [s for s in self._stages if s.role == "train" and s.comes_with == train.name and s.seed]
            role = "baseline" if train.name == BASELINE else "student" if train.name == MAIN else "variant"
            students.append(
                PlannedStudent(
                    name=train.name,
                    evaluate=evaluates[train.name],
                    role=role,
                    variant=train.variant,
                    seeds=(
                        (first, train.name, evaluates[train.name]),
                        *[(c.seed, c.name, evaluates[c.name]) for c in copies],
                    ),
                )
            )
        return students

    def defaults(self):
        """What ``tfkd run`` runs when neither the spec nor ``--stages`` lists stages."""
        return [s.name for s in self._stages if s.default]

    def requested(self, names=None, spec=None):
        """``names`` (default: the spec's ``stages``, else :meth:`defaults`) in plan order, with
        the stages that come with them (``PlannedStage.comes_with``). A student's stage named
        with its first seed (``train-s1`` when ``train.seeds`` starts with 1) is that stage
        alone, without its other seeds' copies, so that seeds can be split between commands."""
        names = list(names if names is not None else ((spec.stages if spec else None) or self.defaults()))
        first_seed_names = self._first_seed_names(spec) if spec is not None else {}
        alone = {first_seed_names[n] for n in names if n in first_seed_names}
        names = [first_seed_names.get(n, n) for n in names]
        available = self.names
        unknown = [n for n in names if n not in available]
        if unknown:
            where = f" for task {spec.task} and method {spec.method}" if spec is not None else ""
            raise SpecError(
                f"--stages: unknown stage {unknown[0]!r}{where};"
                f"{registry.did_you_mean(unknown[0], available)} Choices: {', '.join(available)}"
            )
        while True:
            brought = [
                s.name
                for s in self._stages
                if s.comes_with in names and s.name not in names and not (s.seed and s.comes_with in alone)
            ]
            if not brought:
                return sorted(dict.fromkeys(names), key=available.index)
            names += brought

    def _first_seed_names(self, spec):
        """``{"<stage>-s<first seed>": stage}`` for each student with copies for other seeds."""
        names = {}
        for student in self.students(spec):
            (first, train, evaluate), *copies = student.seeds
            if copies:
                names.update({seed_stage_name(train, first): train, seed_stage_name(evaluate, first): evaluate})
        return names

    # ------------------------------------------------------------------ extending (tasks)

    def insert(self, position, stage):
        """Add ``stage`` (a :class:`PlannedStage`) before the stage at index ``position``."""
        self._stages.insert(position, stage)

    def add_dependency(self, name, dependency):
        stage = self[name]
        if dependency not in stage.depends:
            stage.depends = (*stage.depends, dependency)


def _generic(role, name, class_name, depends, default=True, variant=None, method=None, **kwargs):
    """A planned generic stage (:mod:`tfkd.stages`, imported when the stage is built)."""
    return PlannedStage(
        name,
        tuple(depends),
        f"tfkd.stages:{class_name}",
        dict(kwargs, name=name),
        role=role,
        default=default,
        variant=variant,
        method=method,
    )


def has_baseline(spec):
    """Whether the run offers ``baseline`` (the same student trained by the default method)."""
    default = registry.default("method")
    return registry.lookup("method", spec.method).compares_with_baseline and spec.method != default


def train_stages(name, spec, method_name, variant=None, default=True):
    """The train stage ``name`` and its evaluate stage, for the view ``spec`` of the run."""
    method = registry.lookup("method", method_name)
    own = RunContext(spec)
    if method_name != spec.method:  # the baseline: the run's student trained by the default method
        own = RunContext(spec.model_copy(update={"distill": method.spec_schema(method=method.name)}))
    init = None if name == BASELINE else own.spec.train.init_from
    depends = ("vocab", *method.train_inputs(own), *((init,) if init else ()))
    return [
        _generic(
            "train",
            name,
            "TrainStage",
            depends,
            default,
            variant,
            method_name,
            method_name=method_name,
            variant_name=variant,
        ),
        _generic(
            "evaluate",
            evaluate_stage_name(name),
            "EvaluateStage",
            (name,),
            default,
            variant,
            train_stage=name,
            variant_name=variant,
        ),
    ]


def seed_stage_name(name, seed):
    """The name of stage ``name``'s copy for ``seed``, one of ``train.seeds`` after the first
    (the first seed's stages keep their names)."""
    return f"{name}-s{seed}"


def seed_of_stage(name):
    """``(stage name for the first seed, seed or None)`` of a stage name."""
    base, _, seed = name.rpartition("-s")
    return (base, int(seed)) if base and seed.isdigit() else (name, None)


def _add_seed_copies(plan, spec):
    """Each student's train and evaluate stages once more per seed of its ``train.seeds`` after
    the first (a variant's own, such as ``[1]`` for a teacher trained once), right after its
    own, depending on what the first seed's depend on (the teacher's stages run once)."""
    resolved = spec._variants or {}
    for train in [s for s in plan if s.role == "train"]:
        own = resolved.get(train.variant, spec) if train.variant is not None else spec
        seeds = (own.train.seeds or [])[1:]
        evaluate = next(s for s in plan if s.role == "evaluate" and s.kwargs.get("train_stage") == train.name)
        position = plan.names.index(evaluate.name) + 1
        for seed in seeds:
            name, evaluate_name = seed_stage_name(train.name, seed), seed_stage_name(evaluate.name, seed)
            copies = [
                dataclasses.replace(
                    train, name=name, kwargs=dict(train.kwargs, name=name, seed=seed), seed=seed, comes_with=train.name
                ),
                dataclasses.replace(
                    evaluate,
                    name=evaluate_name,
                    depends=tuple(name if d == train.name else d for d in evaluate.depends),
                    kwargs=dict(evaluate.kwargs, name=evaluate_name, train_stage=name, seed=seed),
                    seed=seed,
                    comes_with=evaluate.name,
                ),
            ]
            for stage in copies:
                stage.__dict__.pop("_stage", None)
                plan.insert(position, stage)
                position += 1


def swept_variants(spec):
    """The variants the spec's ``sweep`` expanded into (see :mod:`tfkd.spec.sweep`)."""
    return list(spec._swept or []) if spec.sweep is not None else []


SELECT_STAGE = "select"


def _add_selection(plan, candidates):
    """``select`` after the last candidate's evaluate stages: it reads their scores on the
    sweep's split (every seed's), chooses one and scores it, alone, on the test splits."""
    evaluates = [
        s.name for s in plan if s.role == "evaluate" and seed_of_stage(s.kwargs["train_stage"])[0] in candidates
    ]
    position = max(plan.names.index(name) for name in evaluates) + 1
    trains = {c: [s.name for s in plan if s.role == "train" and seed_of_stage(s.name)[0] == c] for c in candidates}
    plan.insert(
        position,
        PlannedStage(
            SELECT_STAGE,
            tuple(evaluates),
            "tfkd.selection:SelectStage",
            {"name": SELECT_STAGE, "candidates": trains},
            role="evaluate",
            comes_with="evaluate",
        ),
    )


def plan_run(spec):
    """The run's :class:`RunPlan` (computed once per loaded spec)."""
    cached = spec._plan
    if cached is not None and cached[0] == id(spec):
        return cached[1]
    context = RunContext(spec)
    method = context.method
    stages = [_generic("vocab", "vocab", "VocabStage", ())]
    stages += [dataclasses.replace(s, role="method") for s in method.plan_stages(context)]
    if has_baseline(spec):
        stages += train_stages(BASELINE, spec, registry.default("method"), default=method.baseline_by_default)
    resolved = spec._variants or {}
    swept = swept_variants(spec)
    for name in spec.variants or {}:
        own = resolved.get(name)
        pair = train_stages(name, own if own is not None else spec, (own or spec).method, variant=name)
        if name in swept:  # scored on the selection split alone, run with the spec's student
            pair[1].kwargs["splits"] = [spec.sweep.split]
            pair[0].comes_with, pair[1].comes_with = "train", "evaluate"
        stages += pair
    stages += train_stages(MAIN, spec, spec.method)
    if spec.sweep is not None:
        stages[-1].kwargs["splits"] = [spec.sweep.split]
    stages.append(_generic("export", "export", "ExportStage", (MAIN,), False, train_stage=MAIN))
    plan = RunPlan(stages)
    context.task.extend_plan(context, plan)
    method.extend_plan(context, plan)
    _add_seed_copies(plan, spec)
    if spec.sweep is not None:
        _add_selection(plan, [MAIN, *swept])
    if spec.variants is None or spec._variants is not None:  # a spec still being validated is planned again
        spec._plan = (id(spec), plan)
    return plan


__all__ = [
    "BASELINE",
    "MAIN",
    "SELECT_STAGE",
    "PlannedStage",
    "PlannedStudent",
    "RunPlan",
    "evaluate_stage_name",
    "has_baseline",
    "plan_run",
    "seed_of_stage",
    "seed_stage_name",
    "swept_variants",
    "train_stages",
]
