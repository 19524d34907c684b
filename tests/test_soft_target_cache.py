"""The teacher cache: every target position predicted exactly once, while masked; top-K
renormalised; shards round-trip."""

import numpy as np
import pytest
import tensorflow as tf

from tfkd.data import SpecialIds
from tfkd.methods.soft_target.cache import CacheWriter, read_cache, soft_targets

SPECIAL = SpecialIds(pad=0, bos=101, eos=102, unk=100)
MASK, VOCAB = 103, 40


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
    ids, probs = soft_targets(teacher, source, target, SPECIAL, MASK, k, temperature, 0.34, 64)
    ids, probs = ids.numpy(), probs.numpy()
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
                seen[(b, t)] = (top, expected[top] / expected[top].sum())
    for b in range(3):
        tgt_len = target[b].shape[0] + 1
        for t in range(tgt_len):
            top, p = seen[(b, t)]
            np.testing.assert_array_equal(ids[b, t], top)
            np.testing.assert_allclose(probs[b, t], p, rtol=1e-5)
            assert probs[b, t].sum() == pytest.approx(1.0, abs=1e-5)
        assert (probs[b, tgt_len:] == 0).all()
    assert len(seen) == sum(target[b].shape[0] + 1 for b in range(3))


def test_cache_shards_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    writer = CacheWriter(str(tmp_path), shard_size=3, top_k=4, metadata={"temperature": 10.0})
    written = {}
    for index in [7, 2, 9, 4, 11, 0, 5]:
        length = rng.integers(1, 6)
        ids = rng.integers(0, 1000, size=(length, 4)).astype(np.int32)
        probs = rng.dirichlet(np.ones(4), size=length).astype(np.float32)
        writer.add(index, ids, probs)
        written[index] = (ids, probs)
    manifest = writer.close()
    assert manifest["examples"] == 7 and len(manifest["shards"]) == 3
    entries, manifest = read_cache(str(tmp_path))
    assert manifest["temperature"] == 10.0
    assert sorted(entries) == sorted(written)
    for index, (ids, probs) in written.items():
        np.testing.assert_array_equal(entries[index][0], ids)
        np.testing.assert_allclose(entries[index][1], probs, atol=1e-3)  # stored as float16


def test_vocabulary_maps_between_a_pruned_student_vocabulary_and_the_teachers():
    from tfkd.data import make_tokenizer
    from tfkd.runner import StageError
    from tfkd.methods.soft_target.stages import vocabulary_maps

    teacher_vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "##d", "e"]
    teacher = make_tokenizer(teacher_vocab)
    student = make_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "b", "##d", "e"])
    to_teacher, to_student = vocabulary_maps(student, teacher)
    assert to_teacher.numpy().tolist() == [0, 1, 2, 3, 4, 6, 8, 9]
    assert to_student[:10].tolist() == [0, 1, 2, 3, 4, -1, 5, -1, 6, 7]
    with pytest.raises(StageError, match=r"1 tokens the teacher does not know \(first: 'zz'\)"):
        vocabulary_maps(make_tokenizer(["[PAD]", "[UNK]", "zz"]), teacher)
