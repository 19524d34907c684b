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


def test_variants_compare_divergences_on_one_teacher_and_key_their_students_by_them(data_dir):
    """``distill.divergence`` (and its beta, skew, tail) is the student's: variants may set it
    (a sweep of divergences shares the teacher's stages); a student at the defaults keeps the
    train-stage key it had before the setting existed, the others get keys of their own."""
    from tfkd import registry
    from tfkd.context import RunContext

    variants = "{rkl: {distill.divergence: reverse_kl}, jsd: {distill.divergence: jsd, distill.beta: 0.3}, " + (
        "tail: {distill.tail: true}}"
    )
    spec = load_spec(QUICKSTART, [f"variants={variants}"])
    assert spec.variant("jsd").distill.beta == 0.3 and spec.variant("tail").distill.tail
    soft_target = registry.lookup("method", "soft_target")
    configs = {name: soft_target.train_config(RunContext(spec.variant(name))) for name in ("rkl", "jsd", "tail")}
    plain = soft_target.train_config(RunContext(spec))
    assert sorted(plain) == ["cache_shuffle_buffer", "loss_weights"]  # as before the setting
    assert configs["rkl"]["divergence"] == {"divergence": "reverse_kl"}
    assert configs["jsd"]["divergence"] == {"divergence": "jsd", "beta": 0.3}
    assert configs["tail"]["divergence"] == {"tail": True}
    assert "divergence" not in spec.distill.model_dump() and "tail" not in spec.distill.model_dump()


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("distill.beta=0.3", "beta applies to divergence: jsd only (divergence is forward_kl)"),
        ("distill.skew=0.2", "skew applies to divergence: skew_kl or skew_reverse_kl only (divergence is forward_kl)"),
        ("distill.divergence=kl", "distill.divergence: expected one of forward_kl, reverse_kl, jsd, tvd"),
    ],
)
def test_a_divergence_setting_without_its_divergence_is_one_line(data_dir, flag, message):
    with pytest.raises(SpecError) as error:
        load_spec(QUICKSTART, [flag])
    assert message in str(error.value) and "\n" not in str(error.value)
