"""C-MLM inputs and masking: the source is never masked, about 15% of the target is; the
teacher's soft targets predict every target position exactly once, while masked, top-K renormalised."""

import numpy as np
import pytest
import tensorflow as tf

from tfkd.data import SpecialIds
from tfkd.teachers.cmlm import cmlm_mask, pack_pairs, soft_targets

SPECIAL = SpecialIds(pad=0, bos=101, eos=102, unk=100)
MASK, VOCAB = 103, 40


def batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    source = [rng.integers(1000, 2000, size=rng.integers(3, 25)).tolist() for _ in range(n)]
    target = [rng.integers(2000, 3000, size=rng.integers(3, 25)).tolist() for _ in range(n)]
    return source, target


def test_pack_pairs_layout_and_truncation_keeps_the_target():
    token_ids, segment_ids, padding = pack_pairs(
        tf.ragged.constant([[5, 6, 7, 8]]), tf.ragged.constant([[9, 10]]), 8, SPECIAL
    )
    assert token_ids.numpy().tolist() == [[101, 5, 6, 7, 102, 9, 10, 102]]
    assert segment_ids.numpy().tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
    assert padding.numpy().all()


def test_cmlm_mask_never_touches_the_source_and_masks_about_15_percent_of_the_target():
    source, target = batch(400)
    token_ids, segment_ids, padding = pack_pairs(tf.ragged.constant(source), tf.ragged.constant(target), 64, SPECIAL)
    masked, positions, mask_ids, weights = cmlm_mask(
        token_ids, segment_ids, padding, 0.15, MASK, 3000, 20, seed=tf.constant([1, 2])
    )
    token_ids, segment_ids, masked = token_ids.numpy(), segment_ids.numpy(), masked.numpy()
    positions, mask_ids, weights = positions.numpy(), mask_ids.numpy(), weights.numpy()
    changed = masked != token_ids
    # nothing outside the target side ever changes or is predicted
    assert not (changed & (segment_ids == 0)).any()
    predicted = np.zeros_like(changed)
    for row in range(len(positions)):
        predicted[row, positions[row][weights[row] > 0]] = True
    assert not (predicted & (segment_ids == 0)).any()
    assert (changed <= predicted).all()
    # mask_ids are the original tokens at the predicted positions
    np.testing.assert_array_equal(np.take_along_axis(token_ids, positions, 1)[weights > 0], mask_ids[weights > 0])
    target_tokens = ((segment_ids == 1) & (token_ids != 0)).sum()
    fraction = predicted.sum() / target_tokens
    assert 0.13 < fraction < 0.20, fraction  # 15% plus the at-least-one rule on short targets
    assert (predicted.sum(1) >= 1).all()
    # BERT's 80/10/10: most chosen positions read [MASK]
    assert 0.7 < (masked[predicted] == MASK).mean() < 0.9


def test_cmlm_mask_sizes_predictions_to_the_busiest_row():
    source, target = batch(64)
    token_ids, segment_ids, padding = pack_pairs(tf.ragged.constant(source), tf.ragged.constant(target), 64, SPECIAL)
    masked, positions, mask_ids, weights = cmlm_mask(
        token_ids, segment_ids, padding, 0.3, MASK, 3000, seed=tf.constant([3, 4])
    )
    weights = weights.numpy()
    # every chosen position is predicted, and the widest row has no padding slot
    assert weights.sum(1).max() == weights.shape[1]
    changed = (masked.numpy() != token_ids.numpy()).sum(1)
    assert (weights.sum(1) >= changed).all()


def test_prefix_lm_attention_mask_matches_a_numpy_reference():
    from tfkd.teachers.cmlm import prefix_lm_attention_mask

    source, target = batch(6, seed=3)
    token_ids, segment_ids, padding = pack_pairs(tf.ragged.constant(source), tf.ragged.constant(target), 64, SPECIAL)
    mask = prefix_lm_attention_mask(segment_ids, padding).numpy()
    seg, pad = segment_ids.numpy(), padding.numpy()
    for b in range(len(source)):
        for i in range(seg.shape[1]):
            for j in range(seg.shape[1]):
                if not (pad[b, i] and pad[b, j]):
                    expected = False
                elif seg[b, i] == 0:
                    expected = seg[b, j] == 0
                else:
                    expected = seg[b, j] == 0 or j <= i
                assert mask[b, i, j] == expected, (b, i, j)


def test_left_to_right_targets_predict_each_target_token_from_the_position_before():
    from tfkd.teachers.cmlm import left_to_right_targets

    token_ids, segment_ids, padding = pack_pairs(
        tf.ragged.constant([[5, 6], [7]]), tf.ragged.constant([[20, 21, 22], [23]]), 16, SPECIAL
    )
    positions, labels, weights = left_to_right_targets(token_ids, segment_ids, padding)
    # [CLS] 5 6 [SEP] 20 21 22 [SEP] / [CLS] 7 [SEP] 23 [SEP]
    assert weights.numpy().tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert positions.numpy()[0].tolist() == [3, 4, 5, 6] and positions.numpy()[1, :2].tolist() == [2, 3]
    assert labels.numpy()[0].tolist() == [20, 21, 22, 102] and labels.numpy()[1, :2].tolist() == [23, 102]


def test_left_to_right_teacher_never_sees_later_target_tokens():
    import keras
    import keras_hub

    from tfkd.teachers.cmlm import LeftToRightBertLM, left_to_right_soft_targets

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=120, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=32
    )
    teacher = LeftToRightBertLM(keras_hub.models.BertMaskedLM(backbone, preprocessor=None))
    special = SpecialIds(pad=0, bos=1, eos=2, unk=3)
    source = tf.ragged.constant([[10, 11, 12], [13, 14]])
    target = [[40, 41, 42, 43], [44, 45]]
    ids, probs, tail = left_to_right_soft_targets(teacher, source, tf.ragged.constant(target), special, 5, 1.0, 32)
    # the mass outside the K at the predicted positions (a vocabulary of 120 leaves some), 0 after
    assert (tail.numpy()[0, :5] > 0).all() and (tail.numpy()[1, 3:] == 0).all()
    changed = [[40, 41, 99, 98], [44, 97]]  # change the tail of each target
    ids2, probs2, _ = left_to_right_soft_targets(teacher, source, tf.ragged.constant(changed), special, 5, 1.0, 32)
    # predictions of the tokens up to the first change are the same; later ones differ
    np.testing.assert_array_equal(ids[0, :3], ids2[0, :3])
    np.testing.assert_allclose(probs[0, :3], probs2[0, :3], atol=1e-6)
    np.testing.assert_array_equal(ids[1, :2], ids2[1, :2])
    assert not np.allclose(probs[0, 3:5], probs2[0, 3:5])
    assert np.allclose(probs.numpy().sum(-1)[0], 1.0) and (probs.numpy()[1, 3:] == 0).all()
    # the source is read both ways: changing its last token changes the first prediction
    ids3, probs3, _ = left_to_right_soft_targets(
        teacher, tf.ragged.constant([[10, 11, 60], [13, 14]]), tf.ragged.constant(target), special, 5, 1.0, 32
    )
    assert not np.allclose(probs[0, 0], probs3[0, 0])


class RecordingTeacher:
    """Stands in for BertMaskedLM: context-dependent logits, and a log of every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, inputs, training=False):
        tokens = inputs["token_ids"].numpy()
        positions = inputs["mask_positions"].numpy()
        logits = np.zeros(positions.shape + (VOCAB,), np.float32)
        for b in range(tokens.shape[0]):
            context = (tokens[b] == MASK).sum() + tokens[b].sum() % 7
            for j, p in enumerate(positions[b]):
                logits[b, j] = np.sin(np.arange(VOCAB) * (p + 1) + context) * 4
        self.calls.append((tokens, positions, logits))
        return tf.constant(logits)


def test_every_target_position_is_predicted_once_while_masked():
    source = tf.ragged.constant([[5, 6, 7], [8, 9, 10, 11, 12], [13]])
    target = tf.ragged.constant([[20, 21, 22, 23, 24, 25, 26, 27, 28], [30, 31], [32, 33, 34, 35]])
    teacher = RecordingTeacher()
    k, temperature = 5, 2.0
    ids, probs, tail = soft_targets(teacher, source, target, SPECIAL, MASK, k, temperature, 0.34, 64)
    ids, probs, tail = ids.numpy(), probs.numpy(), tail.numpy()
    assert len(teacher.calls) == 3  # ceil(1 / 0.34) groups
    seen = {}
    for tokens, positions, logits in teacher.calls:
        for b in range(tokens.shape[0]):
            src_len = source[b].shape[0]
            first_target = src_len + 2  # [CLS] X [SEP]
            tgt_len = target[b].shape[0] + 1  # Y [SEP]
            masked = set(np.flatnonzero(tokens[b] == MASK))
            # only target positions are ever masked
            assert all(first_target <= p < first_target + tgt_len for p in masked)
            for j, p in enumerate(positions[b]):
                if p not in masked:
                    continue  # row padding of mask_positions
                t = p - first_target
                assert (b, t) not in seen, "predicted twice"
                expected = np.exp(logits[b, j] / temperature)
                expected /= expected.sum()
                top = np.argsort(-expected)[:k]
                seen[(b, t)] = (top, expected[top] / expected[top].sum(), 1.0 - expected[top].sum())
    for b in range(3):
        tgt_len = target[b].shape[0] + 1
        for t in range(tgt_len):
            top, p, rest = seen[(b, t)]
            np.testing.assert_array_equal(ids[b, t], top)
            np.testing.assert_allclose(probs[b, t], p, rtol=1e-5)
            assert probs[b, t].sum() == pytest.approx(1.0, abs=1e-5)
            assert tail[b, t] == pytest.approx(rest, abs=1e-6) and rest > 0.01
        assert (probs[b, tgt_len:] == 0).all() and (tail[b, tgt_len:] == 0).all()
    assert len(seen) == sum(target[b].shape[0] + 1 for b in range(3))
