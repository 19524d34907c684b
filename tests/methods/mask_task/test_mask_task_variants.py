"""mask_task's variants share the run's teacher MLM head (trained on X' masked as the run
masks it) and, with ``teacher: cache``, its cache of X' and distributions."""

import os

import pytest
from helpers import REPO

from tfkd.errors import SpecError
from tfkd.spec import load_spec

MASKTASK = os.path.join(REPO, "specs", "masktask_multi30k.yaml")


@pytest.mark.parametrize(
    ("overrides", "setting", "stage"),
    [
        ([], "distill.mask_rate: 0.3", "teacher_mlm"),
        ([], "distill.masking: span", "teacher_mlm"),
        ([], "distill.teacher_mlm.steps: 5", "teacher_mlm"),
        (["distill.teacher=cache"], "distill.cache.top_k: 4", "teacher_mlm_cache"),
    ],
)
def test_a_variant_changing_the_teachers_stages_is_refused(data_dir, overrides, setting, stage):
    with pytest.raises(
        SpecError, match=rf"variants.other: {setting.split(':')[0]}: every student of the run shares its {stage} stage"
    ) as error:
        load_spec(MASKTASK, [*overrides, f"variants.other={{{setting}}}"])
    assert "\n" not in str(error.value)


def test_a_variant_may_change_the_weights_and_the_gate(data_dir):
    spec = load_spec(MASKTASK, ["variants.other={distill.alpha: 0.25, distill.gate: none}"])
    assert spec.variant("other").distill.alpha == 0.25


def test_kd_input_clean_is_a_variant_and_needs_the_online_teacher(data_dir):
    spec = load_spec(MASKTASK, ["variants.orig={distill.gate: none, distill.kd_input: clean}"])
    assert spec.variant("orig").distill.kd_input == "clean" and spec.distill.kd_input == "masked"
    with pytest.raises(SpecError, match=r"masktask_multi30k.yaml:\d+: distill: kd_input: clean needs teacher: online"):
        load_spec(MASKTASK, ["distill.kd_input=clean", "distill.teacher=cache"])


@pytest.mark.parametrize("teacher", ["online", "cache"])
def test_the_divergence_keys_the_train_stage_and_reaches_the_distiller(data_dir, monkeypatch, teacher):
    import types

    import tfkd.methods.mask_task as mask_task
    from tfkd import registry
    from tfkd.context import RunContext
    from tfkd.distillation.divergences import Divergence
    from tfkd.methods.mask_task import distiller
    from tfkd.teachers import mlm_head as teacher_mlm

    made = {}
    monkeypatch.setattr(distiller, "MaskTaskDistiller", lambda *args, **kwargs: made.update(kwargs))
    monkeypatch.setattr(mask_task, "teacher_tokenizer", lambda spec: None)
    monkeypatch.setattr(teacher_mlm, "load_trained_teacher", lambda context: None)
    monkeypatch.setattr(RunContext, "tokenizers", lambda self: types.SimpleNamespace(source=None))
    method = registry.lookup("method", "mask_task")
    own = ["variants=null", "stages=[vocab, teacher_mlm, train]", f"distill.teacher={teacher}"]
    plain, reverse = load_spec(MASKTASK, own), load_spec(MASKTASK, [*own, "distill.divergence=reverse_kl"])
    # the default is left out of the key (the train stages of earlier runs stay done)
    assert "divergence" not in str(method.train_config(RunContext(plain)))
    assert "reverse_kl" in str(method.train_config(RunContext(reverse)))
    for spec, expected in [(plain, Divergence()), (reverse, Divergence("reverse_kl"))]:
        method.make_trainer(RunContext(spec), student=None)
        assert made["divergence"] == expected
    with pytest.raises(SpecError, match=r"distill: tail applies to teacher: cache \(the online teacher's whole"):
        load_spec(MASKTASK, ["distill.tail=true"])
    assert load_spec(MASKTASK, [*own[:2], "distill.teacher=cache", "distill.tail=true"]).distill.tail
