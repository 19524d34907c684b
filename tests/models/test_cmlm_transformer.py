"""Parallel (Mask-Predict) Transformer students (tfkd/models/cmlm_transformer.py): the CMLM Transformer and
AB-Net-Enc's parallel variant. The decoder reads the whole target, ``[LENGTH]`` predicts the
length from the source alone, positions project only where asked, serialization round trips,
Mask-Predict decodes them, and the conditional-MLM trainer (tfkd/training/cmlm.py) fits a copy
task with them."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkd import registry
from tfkd.data import SpecialIds
from tfkd.models.cmlm_transformer import CMLMTransformer
from tfkd.models.transformer import TransformerSeq2Seq

SPECIAL = SpecialIds(pad=0, unk=1, bos=2, eos=3)
MASK = 4
SOURCE = np.array([[5, 6, 7, 8], [9, 10, 0, 0]], np.int32)
DECODER = np.array([[11, MASK, 12, 13], [MASK, 14, 0, 0]], np.int32)
SIZES = dict(encoder_layers=1, decoder_layers=2, hidden_dim=16, intermediate_dim=32, num_heads=2, dropout=0.0)


def cmlm_transformer(seed=1, **options):
    keras.utils.set_random_seed(seed)
    model = CMLMTransformer(30, 40, max_target_length=12, mask_id=MASK, **{**SIZES, **options})
    model({"source_ids": SOURCE, "decoder_ids": DECODER})
    return model


def test_the_students_are_registered_with_their_schemas():
    from tfkd.models.abilities import ParallelDecoding, TargetMaskToken
    from tfkd.models.abnet import ABNetEncParallel
    from tfkd.models.configs import ABNetEncParallelConfig, CMLMTransformerConfig

    assert registry.lookup("student", "cmlm_transformer") is CMLMTransformer
    assert registry.schema("student", "cmlm_transformer") is CMLMTransformerConfig
    assert registry.lookup("student", "abnet_enc_parallel") is ABNetEncParallel
    assert registry.schema("student", "abnet_enc_parallel") is ABNetEncParallelConfig
    for student in (CMLMTransformer, ABNetEncParallel):
        assert issubclass(student, ParallelDecoding) and issubclass(student, TargetMaskToken)
    with pytest.raises(ValueError, match="CMLMTransformer needs mask_id"):
        CMLMTransformer(30, 40, **SIZES)


def test_every_target_position_reads_the_whole_target_unlike_the_transformer_s():
    model = cmlm_transformer()
    out = model({"source_ids": SOURCE, "decoder_ids": DECODER})
    assert out["logits"].shape == (2, 4, 40) and out["length_logits"].shape == (2, 13)
    later = DECODER.copy()
    later[0, 3] = 15  # a later target token...
    changed = model({"source_ids": SOURCE, "decoder_ids": later})
    assert not np.allclose(changed["logits"][0, 0], out["logits"][0, 0], atol=1e-5)  # ...moves position 0
    np.testing.assert_array_equal(changed["logits"][1], out["logits"][1])  # the other sentence's are its own
    np.testing.assert_array_equal(changed["length_logits"], out["length_logits"])  # the length reads the source
    keras.utils.set_random_seed(1)
    causal = TransformerSeq2Seq(30, 40, **SIZES)
    np.testing.assert_allclose(
        causal({"source_ids": SOURCE, "decoder_ids": later})[0, 0],
        causal({"source_ids": SOURCE, "decoder_ids": DECODER})[0, 0],
        atol=1e-6,
    )


def test_the_length_comes_from_the_source_alone_and_padding_changes_nothing():
    model = cmlm_transformer()
    out = model({"source_ids": SOURCE, "decoder_ids": DECODER})
    hidden, padding_mask = model.encode(SOURCE)
    assert hidden.shape == (2, 5, 16)  # [LENGTH] and the four source positions
    np.testing.assert_array_equal(padding_mask, [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    np.testing.assert_allclose(model.length_logits(hidden), model.length_classifier(hidden[:, 0]))
    source = SOURCE.copy()
    source[1, 0] = 11
    moved = model({"source_ids": source, "decoder_ids": DECODER})["length_logits"]
    assert not np.allclose(moved[1], out["length_logits"][1], atol=1e-5)
    padded = model({"source_ids": np.pad(SOURCE, ((0, 0), (0, 3))), "decoder_ids": np.pad(DECODER, ((0, 0), (0, 2)))})
    np.testing.assert_allclose(padded["logits"][:, :4], out["logits"], atol=1e-5)
    np.testing.assert_allclose(padded["length_logits"], out["length_logits"], atol=1e-5)


def test_positions_project_only_there_and_mask_predict_decodes_the_student():
    from tfkd.decoding.mask_predict import mask_predict

    model = cmlm_transformer(seed=2, tie_embeddings=False)
    hidden, padding_mask = model.encode(SOURCE)
    full = model.decode(DECODER, hidden, padding_mask)
    positions = np.array([[3, 0], [1, 1]], np.int32)
    picked = model.decode(DECODER, hidden, padding_mask, positions=positions)
    np.testing.assert_allclose(picked, tf.gather(full, positions, batch_dims=1), atol=1e-6)
    ids, scores = mask_predict(model, tf.constant(SOURCE), SPECIAL, 8, length_candidates=3, iterations=4)
    assert ids.shape[0] == 2 and scores.shape == (2,)
    # every token a real one: no padding inside a hypothesis, never [MASK] or a special token
    for row in ids.numpy():
        length = int(np.sum(row != SPECIAL.pad))
        assert 1 <= length <= 8 and (row[:length] > MASK).all() and (row[length:] == SPECIAL.pad).all()


def test_serialization_round_trip_gives_identical_outputs(tmp_path):
    """As the train stage saves a student (student.json + student.weights.h5) and reloads it."""
    model = cmlm_transformer(seed=3)
    with open(tmp_path / "student.json", "w") as f:
        json.dump(keras.saving.serialize_keras_object(model), f)
    model.save_weights(str(tmp_path / "student.weights.h5"))
    with open(tmp_path / "student.json") as f:
        revived = keras.saving.deserialize_keras_object(json.load(f))
    assert isinstance(revived, CMLMTransformer) and revived.get_config() == model.get_config()
    assert revived.mask_id == MASK and revived.max_target_length == 12
    revived({"source_ids": SOURCE, "decoder_ids": DECODER})
    revived.load_weights(str(tmp_path / "student.weights.h5"))
    expected, got = (
        model({"source_ids": SOURCE, "decoder_ids": DECODER}),
        revived({"source_ids": SOURCE, "decoder_ids": DECODER}),
    )
    for key in ("logits", "length_logits"):
        np.testing.assert_array_equal(got[key], expected[key])


def test_the_conditional_mlm_trainer_fits_a_copy_task():
    """Targets that copy the source: 200 Adam steps of the CMLM and length losses
    bring the masked-token NLL and the length loss down, and Mask-Predict then copies half the
    sentences or more exactly."""
    from tfkd.training.cmlm import CMLMTrainer, cmlm_columns

    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 6, size=64)
    source = np.zeros([64, 6], np.int32)
    for row, length in enumerate(lengths):
        source[row, :length] = rng.integers(5, 20, size=length)
    targets = np.concatenate([source, np.zeros([64, 1], np.int32)], axis=1)
    targets[np.arange(64), lengths] = SPECIAL.eos  # y [SEP], as the task gives targets
    model = cmlm_transformer(seed=4, hidden_dim=32, intermediate_dim=64)
    trainer = CMLMTrainer(model, {"cmlm": 1.0, "length": 0.1}, SPECIAL, MASK, label_smoothing=0.0)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))

    def batch(seed):
        columns = cmlm_columns(tf.constant(targets), tf.constant([seed, 1], tf.int64), SPECIAL.pad, SPECIAL.eos, MASK)
        return {"source_ids": tf.constant(source), "decoder_ids": tf.constant(targets), **columns}, tf.constant(targets)

    first = {k: float(v) for k, v in trainer.train_on_batch(*batch(0), return_dict=True).items()}
    for step in range(1, 200):
        last = {k: float(v) for k, v in trainer.train_on_batch(*batch(step), return_dict=True).items()}
    assert last["nll"] < 0.25 * first["nll"] and last["length"] < 0.5 * first["length"], (first, last)
    from tfkd.decoding.mask_predict import mask_predict

    ids, _ = mask_predict(model, tf.constant(source[:16]), SPECIAL, 8, length_candidates=2, iterations=4)
    copied = [list(row[row != 0]) == list(src[src != 0]) for row, src in zip(ids.numpy(), source[:16])]
    assert sum(copied) >= 8, copied
