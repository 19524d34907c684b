"""The shared teacher MLM stage (:mod:`tfkd.teachers.mlm_head`): its batches, which
layers train, and skipping a checkpoint that already has a head."""

import types

import numpy as np
import tensorflow as tf
import tiny_mask_task as tiny

from tfkd.teachers.mlm_head import TeacherMLMStage, freeze_below, mlm_batches
from tfkd.teachers.settings import TeacherMLMSpec


def test_mlm_batches_wrap_sentences_in_cls_sep_and_mask_only_their_words():
    _, tokenizer = tiny.tokenizers()
    sentences = tf.ragged.constant([[5, 6, 7, 8, 9, 10, 11, 12], [13, 14], [15, 16, 17]], tf.int32)
    settings = TeacherMLMSpec(batch_size=3, max_length=16)
    inputs, labels, weights = next(iter(mlm_batches(sentences, tokenizer, settings, "token", 0.3, 1, training=False)))
    ids = inputs["token_ids"].numpy()
    assert ids.shape == (3, 10) and (ids[:, 0] == 2).all()  # [CLS]
    assert ids[1, 3] == 3 and ids[1, 4:].tolist() == [0] * 6  # [SEP], padding
    positions, weights = inputs["mask_positions"].numpy(), weights.numpy()
    rows, cols = np.nonzero(weights)
    chosen = positions[rows, cols]
    assert ((chosen >= 1) & (chosen <= np.array([8, 2, 3])[rows])).all()  # words only
    # validation masks are fixed: the same batch twice
    again = next(iter(mlm_batches(sentences, tokenizer, settings, "token", 0.3, 1, training=False)))
    np.testing.assert_array_equal(again[0]["token_ids"], inputs["token_ids"])


def test_freeze_below_trains_the_head_and_the_top_layers_only():
    masked_lm = tiny.teacher_masked_lm()
    masked_lm(
        {
            "token_ids": np.ones((1, 3), "int32"),
            "segment_ids": np.zeros((1, 3), "int32"),
            "padding_mask": np.ones((1, 3), bool),
            "mask_positions": np.ones((1, 1), "int32"),
        }
    )
    total = len(masked_lm.trainable_variables)
    freeze_below(masked_lm, 1)
    trainable = {v.path for v in masked_lm.trainable_variables}
    assert trainable and len(trainable) < total
    assert all("transformer_layer_0" not in p and "embedding" not in p for p in trainable)
    assert any("transformer_layer_1" in p for p in trainable) and any("mlm_head" in p for p in trainable)
    freeze_below(head_only := tiny.teacher_masked_lm(), 0)
    head_only(
        {
            "token_ids": np.ones((1, 3), "int32"),
            "segment_ids": np.zeros((1, 3), "int32"),
            "padding_mask": np.ones((1, 3), bool),
            "mask_positions": np.ones((1, 1), "int32"),
        }
    )
    assert all("mlm_head" in v.path for v in head_only.trainable_variables)


def test_a_checkpoint_with_an_mlm_head_skips_the_training(tmp_path):
    preset = tmp_path / "with_head"
    tiny.teacher_masked_lm().save_to_preset(str(preset))
    context = types.SimpleNamespace(
        spec=types.SimpleNamespace(
            teacher=types.SimpleNamespace(checkpoint=str(preset)),
            distill=types.SimpleNamespace(teacher_mlm=TeacherMLMSpec()),
        )
    )
    # the stage returns before reading any corpus (the context has none)
    assert TeacherMLMStage().run(context, str(tmp_path / "work")) == {"head": "checkpoint"}
