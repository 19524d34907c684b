"""The masked-LM teacher's stage names: its cache is ``teacher_mlm_cache`` in both methods that
plan it, and the name it had before (``teacher_cache``, the C-MLM teacher's) is a one-line
error that names the new one."""

import pytest
from helpers import REPO, tfkd

from tfkd.teachers.mlm_plan import MLM_CACHE_STAGE, MLM_STAGE


@pytest.mark.parametrize(
    "spec, flags",
    [
        ("masktask_multi30k.yaml", ["distill.teacher=cache"]),
        ("lightpaff_sst2_cpu.yaml", ["distill.teacher=cache", "variants=null"]),
    ],
)
def test_both_methods_plan_the_mlm_teachers_cache_by_its_one_name(spec, flags, data_dir):
    from tfkd.plan import plan_run
    from tfkd.spec import load_spec

    loaded = load_spec(f"{REPO}/specs/{spec}", overrides=flags)
    names = plan_run(loaded).names
    assert names.index(MLM_STAGE) < names.index(MLM_CACHE_STAGE) and "teacher_cache" not in names


def test_the_caches_former_name_is_one_line_naming_the_new_one(data_dir):
    out = tfkd(
        "config",
        f"{REPO}/specs/masktask_multi30k.yaml",
        "--stages",
        "vocab,teacher_cache",
        "--set",
        "distill.teacher=cache",
    )
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert "unknown stage 'teacher_cache'" in line and 'did you mean "teacher_mlm_cache"?' in line, line
