"""Where the ensemble's stages go in a run's plan, and the checks of the teachers it names.
Importing this does not import TensorFlow (spec validation reads the plan).

- A teacher that is a train stage ``X`` of the run gets ``teacher_cache_X`` right after ``X``'s
  evaluate stage (one per teacher, whichever students read it: a third teacher added later
  leaves the first two caches' keys as they were). A teacher ``T`` read from an exported model
  gets ``teacher_cache_T`` right before the first train stage.
- A student with several teachers reads ``<student>_soft_targets``, their combined cache,
  planned right before it; a student with one teacher reads that teacher's cache.
"""

import functools
import json

from tfkd.distillation.cmlm_plan import CACHE_STAGE as CMLM_CACHE
from tfkd.plan import PlannedStage, seed_of_stage

SOFT_TARGETS_SUFFIX = "_soft_targets"
# the source naming the run's C-MLM fine-tuned BERT teacher
CMLM = "cmlm"


def is_export(source):
    """Whether a teacher's source is the path of an exported model (stage names have no path
    separator)."""
    return "/" in source or "\\" in source


def teacher_cache_stage(name, source):
    """The cache stage of teacher ``name`` with ``source`` (``cmlm``, a train stage of the run,
    or an exported model's path)."""
    if source == CMLM:
        return CMLM_CACHE
    return f"teacher_cache_{name if is_export(source) else source}"


def soft_targets_stage(student, section):
    """The stage whose cache the train stage ``student`` (first seed's name) reads."""
    sources = section.sources()
    if len(sources) == 1:
        return teacher_cache_stage(*next(iter(sources.items())))
    return f"{student}{SOFT_TARGETS_SUFFIX}"


def _students(method, context, plan):
    """``[(train stage, variant or None, its spec)]`` of the run's first-seed students trained
    by the ensemble method (variants once resolved)."""
    spec, resolved = context.spec, context.spec._variants or {}
    found = []
    for name in plan.with_role("train"):
        stage = plan[name]
        if stage.method != method.name or stage.seed is not None:
            continue
        own = spec if stage.variant is None else resolved.get(stage.variant)
        if own is not None:
            found.append((name, stage.variant, own))
    return found


def _evaluate_of(plan, name):
    evaluate = "evaluate" if name == "train" else f"{name}_evaluate"
    return evaluate if evaluate in plan else name


def _stage_view(planned, spec):
    """The view of ``spec`` the planned train stage trains with."""
    return planned.make().view(spec)


def _student_teacher_settings(teacher):
    return {
        "top_k": teacher.top_k or 8,
        "temperature": teacher.temperature or 1.0,
        "batch_size": teacher.batch_size,
    }


def extend_plan(method, context, plan):
    """Insert the student teachers' caches and the combined caches (see the module)."""
    trains = plan.with_role("train")
    for student, _, own in _students(method, context, plan):
        section = own.distill
        weights = section.normalised_weights()
        caches = []
        for name, source in section.sources().items():
            cache = teacher_cache_stage(name, source)
            if is_export(source):
                if cache not in plan:
                    plan.insert(
                        plan.names.index(trains[0]),  # before every student
                        PlannedStage(
                            cache,
                            ("vocab",),
                            "tfkd.methods.ensemble.stages:ExportTeacherCacheStage",
                            {"name": cache, "path": source, **_student_teacher_settings(section.teachers[name])},
                        ),
                    )
            elif source != CMLM:
                if source not in trains or source == student or trains.index(source) > trains.index(student):
                    continue  # check_plan says why
                if cache not in plan:
                    plan.insert(
                        plan.names.index(_evaluate_of(plan, source)) + 1,
                        PlannedStage(
                            cache,
                            ("vocab", source),
                            "tfkd.methods.ensemble.stages:StudentTeacherCacheStage",
                            {
                                "name": cache,
                                "source": source,
                                "source_spec": functools.partial(_stage_view, plan[source]),
                                **_student_teacher_settings(section.teachers[name]),
                            },
                        ),
                    )
                    plan[source].default = True
            caches.append((cache, weights[name]))
        if len(caches) != len(weights):
            continue
        if len(caches) == 1:
            plan.add_dependency(student, caches[0][0])
            continue
        combined = soft_targets_stage(student, section)
        plan.insert(
            plan.names.index(student),
            PlannedStage(
                combined,
                tuple(cache for cache, _ in caches),
                "tfkd.methods.ensemble.stages:SoftTargetsStage",
                {
                    "name": combined,
                    "caches": [cache for cache, _ in caches],
                    "weights": [weight for _, weight in caches],
                    "combine": section.combine,
                    "shard_size": section.shard_size,
                },
            ),
        )
        plan.add_dependency(student, combined)


def _one_cache(settings, cache, student, wanted, variant, key, teacher):
    """The problem of ``student`` reading ``cache`` with other settings than the first student
    that read it (``settings``: cache -> (that student, its settings))."""
    first = settings.setdefault(cache, (student, wanted))
    if first[1] == wanted:
        return []
    message = f"teacher {teacher} has one cache ({cache}), which {first[0]} reads with {json.dumps(first[1])}"
    return [(variant, key, f"{message}; give it the same settings")]


def check_plan(method, context, plan):
    """Each teacher is ``cmlm`` or a train stage that runs before its student; a teacher named
    by several students has the same settings in each (it has one cache)."""
    from tfkd import registry

    problems = []
    names = plan.names
    trains = [name for name in plan.with_role("train") if seed_of_stage(name)[1] is None]
    settings = {}
    # the run's own student first: a variant that differs from it is the one named
    for student, variant, own in sorted(_students(method, context, plan), key=lambda s: s[1] is not None):
        for name, source in own.distill.sources().items():
            key = ("distill", "teachers", name)
            cache = teacher_cache_stage(name, source)
            if source == CMLM:
                continue
            if is_export(source):
                wanted = {"path": source, **_student_teacher_settings(own.distill.teachers[name])}
                problems += _one_cache(settings, cache, student, wanted, variant, key, name)
                continue
            before = [t for t in trains if t != "train" and names.index(t) < names.index(student)]
            choices = (
                f"cmlm, a train stage before {student} ({', '.join(before) or 'none in this run'}), or the path "
                "of an exported model version folder (<run>/export/<model>/<version>)"
            )
            if source == student:
                problems.append((variant, key, f"stage {student} cannot teach itself; expected {choices}"))
            elif source not in trains:
                hint = registry.did_you_mean(source, [CMLM, *before]).strip()
                message = f"unknown teacher {json.dumps(source)}" + (f" ({hint})" if hint else "")
                problems.append((variant, key, f"{message}; expected {choices}"))
            elif names.index(source) > names.index(student):
                problems.append(
                    (
                        variant,
                        key,
                        f"stage {source} runs after {student}, which reads its soft targets; declare "
                        f"{source} before {student} in variants, or expected {choices}",
                    )
                )
            else:
                wanted = _student_teacher_settings(own.distill.teachers[name])
                problems += _one_cache(settings, cache, student, wanted, variant, key, source)
    return problems


__all__ = [
    "CMLM",
    "SOFT_TARGETS_SUFFIX",
    "check_plan",
    "extend_plan",
    "is_export",
    "soft_targets_stage",
    "teacher_cache_stage",
]
