"""soft_target's variants share the run's fine-tuned teacher and its cache: a variant may
change what the student does with the soft targets, not the targets."""

import os

import pytest
from helpers import REPO

from tfkd.errors import SpecError
from tfkd.spec import load_spec

QUICKSTART = os.path.join(REPO, "specs", "quickstart.yaml")


@pytest.mark.parametrize(
    ("setting", "stage"),
    [
        ("distill.cache.temperature: 2.0", "teacher_cache"),
        ("distill.cache.top_k: 4", "teacher_cache"),
        ("distill.cache.mask_rate: 0.15", "teacher_cache"),
        ("distill.finetune.steps: 100", "teacher_finetune"),
        ("distill.finetune.mask_rate: 0.15", "teacher_finetune"),
    ],
)
def test_a_variant_changing_the_teacher_is_refused(data_dir, setting, stage):
    key = setting.split(":")[0]
    with pytest.raises(SpecError) as error:
        load_spec(QUICKSTART, [f"variants={{other: {{{setting}}}}}"])
    assert str(error.value) == (
        f"--set variants={{other: {{{setting}}}}}: variants.other: {key}: every student of the run shares its "
        f"{stage} stage, which this setting keys; set it for the run instead (one run per value)"
    )


def test_a_variant_may_change_the_student_side(data_dir):
    spec = load_spec(
        QUICKSTART, ["variants={other: {distill.alpha: 0.5, distill.cache.shuffle_buffer: 100, train.steps: 9}}"]
    )
    assert spec.variant("other").distill.alpha == 0.5
    assert spec.variant("other").distill.cache.shuffle_buffer == 100
