"""Where a top-K cache of a student teacher goes in a run's plan: a student that a train stage
of the run trains (a wider Transformer, the baseline, a variant trained by any method), or an
exported tfkd translation model. Any method whose students learn from such a teacher's
distributions plans the cache with :func:`plan_student_cache` and reads it by example id
(:func:`tfkd.teachers.topk_cache.stream_cache`); the stages are
:mod:`tfkd.teachers.student_caches`. Importing this does not import TensorFlow (spec
validation reads the plan).

- A train stage ``X`` of the run gets ``teacher_cache_X`` right after ``X``'s evaluate stage,
  keyed by ``X``'s key and the cache's settings alone, so every student that reads ``X`` reads
  one cache.
- An exported model ``T`` (a version folder's path) gets ``teacher_cache_T`` right before the
  run's first train stage, keyed by the export's files.
"""

import functools
import json

from tfkd.plan import PlannedStage

STAGES = "tfkd.teachers.student_caches"


def is_export(source):
    """Whether a teacher's source is the path of an exported model (stage names have no path
    separator)."""
    return "/" in source or "\\" in source


def student_cache_stage(source, name=None):
    """The cache stage of the teacher with ``source``, a train stage of the run or an exported
    model's path (then ``name``, the teacher's name in the spec, names the stage)."""
    return f"teacher_cache_{name if is_export(source) else source}"


def _evaluate_of(plan, name):
    evaluate = "evaluate" if name == "train" else f"{name}_evaluate"
    return evaluate if evaluate in plan else name


def _stage_view(planned, spec):
    """The view of ``spec`` the planned train stage trains with."""
    return planned.make().view(spec)


def plan_student_cache(plan, cache, source, top_k=8, temperature=1.0, batch_size=64, tail=False):
    """Insert stage ``cache`` (:func:`student_cache_stage`) caching the top ``top_k`` of
    ``softmax(logits / temperature)`` of teacher ``source`` (a train stage of ``plan``, checked
    by :func:`student_source_problem`, or an exported model's path) at every target position of
    the training pairs, with ``tail`` the mass outside the K too; a cache already planned stays
    as it is. The train stages that read it
    depend on it (``plan.add_dependency``): the caller says which."""
    if cache in plan:
        return
    settings = {"name": cache, "top_k": top_k, "temperature": temperature, "batch_size": batch_size, "tail": tail}
    if is_export(source):
        first_student = plan.names.index(plan.with_role("train")[0])
        plan.insert(
            first_student,
            PlannedStage(cache, ("vocab",), f"{STAGES}:ExportTeacherCacheStage", {"path": source, **settings}),
        )
        return
    plan.insert(
        plan.names.index(_evaluate_of(plan, source)) + 1,
        PlannedStage(
            cache,
            ("vocab", source),
            f"{STAGES}:StudentTeacherCacheStage",
            {"source": source, "source_spec": functools.partial(_stage_view, plan[source]), **settings},
        ),
    )
    plan[source].default = True  # a teacher trains whenever its student does


def student_source_problem(plan, source, student, also=()):
    """Why train stage ``student`` cannot read teacher ``source`` (a train stage of ``plan``, or an
    exported model's path), as one message naming what it may read (``also``: other sources the
    caller accepts, such as ``cmlm``); ``None`` when it can."""
    from tfkd import registry
    from tfkd.plan import seed_of_stage

    if is_export(source):
        return None
    names = plan.names
    trains = [name for name in plan.with_role("train") if seed_of_stage(name)[1] is None]
    before = [t for t in trains if t != "train" and names.index(t) < names.index(student)]
    choices = (
        ", ".join([*also, f"a train stage before {student} ({', '.join(before) or 'none in this run'})"])
        + ", or the path of an exported model version folder (<run>/export/<model>/<version>)"
    )
    if source == student:
        return f"stage {student} cannot teach itself; expected {choices}"
    if source not in trains:
        hint = registry.did_you_mean(source, [*also, *before]).strip()
        return f"unknown teacher {json.dumps(source)}" + (f" ({hint})" if hint else "") + f"; expected {choices}"
    if names.index(source) > names.index(student):
        return (
            f"stage {source} runs after {student}, which reads its soft targets; declare "
            f"{source} before {student} in variants, or expected {choices}"
        )
    return None


__all__ = ["is_export", "plan_student_cache", "student_cache_stage", "student_source_problem"]
