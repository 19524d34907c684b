"""The method base's helper for methods whose teacher stages every student of a run shares."""

from types import SimpleNamespace

from tfkd.methods.base import shared_stage_problems


def spec_with(distill):
    return SimpleNamespace(distill=SimpleNamespace(model_dump=lambda mode="json": distill))


def test_only_the_settings_that_key_a_shared_stage_are_refused():
    run = spec_with({"alpha": 0.1, "cache": {"temperature": 1.0, "shuffle_buffer": 10}, "finetune": {"steps": 8}})
    keys = {"teacher_finetune": [("finetune",)], "teacher_cache": [("cache", "temperature")]}
    # the student-side settings (alpha, how training reads the cache) may change
    same_teacher = spec_with(
        {"alpha": 0.5, "cache": {"temperature": 1.0, "shuffle_buffer": 99}, "finetune": {"steps": 8}}
    )
    assert shared_stage_problems(run, same_teacher, keys) == []
    other = spec_with({"alpha": 0.1, "cache": {"temperature": 5.0, "shuffle_buffer": 10}, "finetune": {"steps": 9}})
    problems = shared_stage_problems(run, other, keys)
    assert [path for path, _ in problems] == [("distill", "finetune"), ("distill", "cache", "temperature")]
    # a key the run's section does not have reads as unset on both sides
    assert shared_stage_problems(run, other, {"teacher_cache": [("cache", "top_k")]}) == []
    assert "teacher_finetune stage" in problems[0][1] and "teacher_cache stage" in problems[1][1]
