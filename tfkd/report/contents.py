"""What a run directory holds, read for its report: the spec, the stage plan, each stage's state
(finished, partial, not started), the finished stages' results and the students. Reads files
only: no corpus, no TensorFlow.

A finished stage is ``<stage>/`` with its ``stage.json``; unfinished work is in
``<stage>.partial/``. Students are the plan's (:meth:`tfkd.plan.RunPlan.students`),
and the extra seeds' copies of them, ``<train stage>-s<SEED>`` and ``<evaluate stage>-s<SEED>``.
"""

import dataclasses
import json
import os

from tfkd.errors import StageError
from tfkd.plan import seed_of_stage, seed_stage_name

PARTIAL = ".partial"
REPORT_DIR = "report"  # the report's default folder inside the run: not a stage

FINISHED, PARTIAL_STATE, NOT_STARTED = "finished", "partial", "not started"


@dataclasses.dataclass
class StageState:
    """One stage of the run: its ``role`` in the plan (``vocab``, ``method``, ``train``,
    ``evaluate``, ``export``, ``task``; ``None`` for a folder the plan does not name), ``state``
    and, when finished, its marker's time and results."""

    name: str
    role: str | None
    state: str
    requested: bool
    finished: str | None = None
    results: dict | None = None
    directory: str | None = None  # the finished folder, else the partial one, else None


@dataclasses.dataclass
class ReportStudent:
    """A student of the run as its report sees it: ``name`` (its train stage), ``label`` (how the
    page names it), ``role`` (``baseline``, ``student``: the spec's own, or ``variant``),
    ``seed`` (``None`` for the first of the run's seeds), its stages, their folders (``None``
    until finished; ``partial_train_dir`` while its training is unfinished) and results, and
    ``spec``, the run's spec as the student's stages see it (a variant's)."""

    name: str
    label: str
    role: str
    seed: int | None
    train_stage: str
    evaluate_stage: str
    spec: object
    train_dir: str | None = None
    partial_train_dir: str | None = None
    evaluate_dir: str | None = None
    train_results: dict | None = None
    evaluate_results: dict | None = None
    latency_ms: float | None = None
    latency_iqr_ms: tuple | None = None  # the interquartile range of its timings
    latency_note: str | None = None

    @property
    def family(self):
        """The train stage of the student's first seed (its own name for that seed)."""
        return self.name[: -len(f"-s{self.seed}")] if self.seed is not None else self.name

    def score(self, split=None):
        """``(split, metric, score)`` of its evaluation on ``split`` (default: ``test`` if it
        was scored there, else the first split scored), or ``None``."""
        scored = {s: r for s, r in (self.evaluate_results or {}).items() if isinstance(r, dict) and "score" in r}
        if not scored:
            return None
        chosen = split if split in scored else ("test" if "test" in scored else next(iter(scored)))
        if split is not None and split != chosen:
            return None
        return chosen, scored[chosen].get("metric", "score"), scored[chosen]["score"]


@dataclasses.dataclass
class RunContents:
    run_dir: str
    spec: object
    runner: object
    context: object
    stages: list
    students: list

    @property
    def results(self):
        """``{stage: results}`` of the finished stages, as :meth:`tfkd.runner.Runner.run` gives them."""
        return {s.name: s.results for s in self.stages if s.state == FINISHED}

    def stage(self, name):
        return next((s for s in self.stages if s.name == name), None)

    def missing(self):
        """The requested stages that have not finished."""
        return [s for s in self.stages if s.requested and s.state != FINISHED]

    @property
    def finished(self):
        return not self.missing()


def _marker(directory):
    path = os.path.join(directory, "stage.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stage_folders(run_dir):
    """``{stage: (finished folder or None, partial folder or None)}`` of what is on disk."""
    found = {}
    for entry in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, entry)
        if not os.path.isdir(path) or entry == REPORT_DIR or ".stale-" in entry:
            continue
        if entry.endswith(PARTIAL):
            name = entry[: -len(PARTIAL)]
            found[name] = (found.get(name, (None, None))[0], path)
        elif _marker(path) is not None:
            found[entry] = (path, found.get(entry, (None, None))[1])
    return found


def _role(plan, name):
    if name in plan:
        return plan[name].role
    base, seed = seed_of_stage(name)
    return plan[base].role if seed is not None and base in plan else None


def read_run(run_dir):
    """The :class:`RunContents` of ``run_dir``; a :class:`~tfkd.errors.StageError` naming it
    when it is not a run directory."""
    from tfkd.pipeline import open_run
    from tfkd.runner import SPEC_FILE

    if not os.path.isdir(run_dir):
        raise StageError(f"{run_dir}: no such run directory")
    if not os.path.isfile(os.path.join(run_dir, SPEC_FILE)):
        raise StageError(f"{run_dir}: not a tfkd run directory (no {SPEC_FILE})")
    spec, runner, context = open_run(run_dir)
    plan = runner.plan
    requested = set(plan.requested(None, spec))
    folders = stage_folders(run_dir)
    # the plan's stages, then what is on disk but not in it: extra seeds' stages (each seed's
    # after its first seed's), then stages of an earlier spec
    names = list(plan.names)

    def place(name):
        base, seed = seed_of_stage(name)
        return (0, seed, names.index(base)) if seed is not None and base in plan else (1, 0, name)

    names += sorted((n for n in folders if n not in plan), key=place)
    stages = []
    for name in names:
        finished, partial = folders.get(name, (None, None))
        marker = _marker(finished) if finished else None
        stages.append(
            StageState(
                name=name,
                role=_role(plan, name),
                state=FINISHED if marker else PARTIAL_STATE if partial else NOT_STARTED,
                requested=name in requested,
                finished=(marker or {}).get("finished"),
                results=(marker or {}).get("results") if marker else None,
                directory=finished or partial,
            )
        )
    contents = RunContents(os.path.abspath(run_dir), spec, runner, context, stages, [])
    contents.students = _students(contents, folders)
    return contents


def _students(contents, folders):
    spec, plan = contents.spec, contents.runner.plan
    students = []
    for planned in plan.students(spec):
        train, evaluate = planned.name, planned.evaluate
        view = spec.variant(train) if planned.variant is not None else spec
        label = "student" if planned.role == "student" else train
        seeds = sorted(
            {s for base, s in map(seed_of_stage, [*folders, *plan.names]) if s is not None and base == train}
        )
        copies = [(None, train, evaluate)] + [
            (s, seed_stage_name(train, s), seed_stage_name(evaluate, s)) for s in seeds
        ]
        for seed, train_stage, evaluate_stage in copies:
            state = contents.stage(train_stage)
            if state is not None and not state.requested and state.state == NOT_STARTED:
                continue  # a student the spec does not train (on this seed or any)
            student = ReportStudent(
                name=train_stage,
                label=label if seed is None else f"{label} (seed {seed})",
                role=planned.role,
                seed=seed,
                train_stage=train_stage,
                evaluate_stage=evaluate_stage,
                spec=view,
            )
            finished_train, partial_train = folders.get(train_stage, (None, None))
            if finished_train:
                student.train_dir, student.train_results = finished_train, state.results
            student.partial_train_dir = partial_train
            evaluated = contents.stage(evaluate_stage)
            if evaluated is not None and evaluated.state == FINISHED:
                student.evaluate_dir, student.evaluate_results = evaluated.directory, evaluated.results
            students.append(student)
    return students


__all__ = ["FINISHED", "NOT_STARTED", "PARTIAL_STATE", "ReportStudent", "RunContents", "StageState", "read_run"]
