"""Where the ensemble's stages go in a run's plan, and the checks of the teachers it names.
Importing this does not import TensorFlow (spec validation reads the plan).

- A teacher that is a train stage ``X`` of the run, or an exported model, gets its top-K cache
  (:mod:`tfkd.teachers.student_plan`: one per teacher, whichever students read it, so a third
  teacher added later leaves the first two caches' keys as they were).
- A student with several teachers reads ``<student>_soft_targets``, their combined cache,
  planned right before it; a student with one teacher reads that teacher's cache.
"""

import json

from tfkd.plan import PlannedStage
from tfkd.teachers.cmlm_plan import CACHE_STAGE as CMLM_CACHE
from tfkd.teachers.student_plan import is_export, plan_student_cache, student_cache_stage, student_source_problem

SOFT_TARGETS_SUFFIX = "_soft_targets"
# the source naming the run's C-MLM fine-tuned BERT teacher
CMLM = "cmlm"


def teacher_cache_stage(name, source):
    """The cache stage of teacher ``name`` with ``source`` (``cmlm``, a train stage of the run,
    or an exported model's path)."""
    return CMLM_CACHE if source == CMLM else student_cache_stage(source, name)


def soft_targets_stage(student, section):
    """The stage whose cache the train stage ``student`` (first seed's name) reads."""
    sources = section.sources()
    if len(sources) == 1:
        return teacher_cache_stage(*next(iter(sources.items())))
    return f"{student}{SOFT_TARGETS_SUFFIX}"


def _student_teacher_settings(teacher):
    return {
        "top_k": teacher.top_k or 8,
        "temperature": teacher.temperature or 1.0,
        "batch_size": teacher.batch_size,
    }


def extend_plan(method, context, plan):
    """Insert the student teachers' caches and the combined caches (see the module)."""
    for student, _, own in context.method_students(plan):
        section = own.distill
        weights = section.normalised_weights()
        caches = []
        for name, source in section.sources().items():
            cache = teacher_cache_stage(name, source)
            if source != CMLM:
                if student_source_problem(plan, source, student):
                    continue  # check_plan says why
                plan_student_cache(plan, cache, source, **_student_teacher_settings(section.teachers[name]))
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
    problems = []
    settings = {}
    # the run's own student first: a variant that differs from it is the one named
    for student, variant, own in sorted(context.method_students(plan), key=lambda s: s[1] is not None):
        for name, source in own.distill.sources().items():
            key = ("distill", "teachers", name)
            cache = teacher_cache_stage(name, source)
            if source == CMLM:
                continue
            if is_export(source):
                wanted = {"path": source, **_student_teacher_settings(own.distill.teachers[name])}
                problems += _one_cache(settings, cache, student, wanted, variant, key, name)
                continue
            problem = student_source_problem(plan, source, student, also=(CMLM,))
            if problem:
                problems.append((variant, key, problem))
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
