"""The top-K teacher cache: shards round-trip; training streams it, checked against its ids and
its shards' sizes and hashes, shuffled per pass; masked top-K entries land at their positions."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from tfkd.teachers.topk_cache import CacheMismatch, CacheWriter, read_cache, stream_cache


def write_cache(directory, indices, shard_size=3, top_k=4):
    """A cache of random entries for ``indices``; returns ``({index: (ids, probs)}, manifest)``."""
    rng = np.random.default_rng(0)
    writer = CacheWriter(str(directory), shard_size=shard_size, top_k=top_k, metadata={"temperature": 10.0})
    written = {}
    for index in indices:
        length = rng.integers(1, 6)
        ids = rng.integers(0, 1000, size=(length, top_k)).astype(np.int32)
        probs = rng.dirichlet(np.ones(top_k), size=length).astype(np.float32)
        writer.add(index, ids, probs)
        written[index] = (ids, probs)
    return written, writer.close()


def test_cache_shards_round_trip(tmp_path):
    written, manifest = write_cache(tmp_path, [7, 2, 9, 4, 11, 0, 5])
    assert manifest["examples"] == 7 and len(manifest["shards"]) == 3
    entries, manifest = read_cache(str(tmp_path))
    assert manifest["temperature"] == 10.0
    assert sorted(entries) == sorted(written)
    for index, (ids, probs) in written.items():
        np.testing.assert_array_equal(entries[index][0], ids)
        np.testing.assert_allclose(entries[index][1], probs, atol=1e-3)  # stored as float16


def test_a_cache_that_keeps_the_tail_streams_it_beside_its_k(tmp_path):
    """``tail=True``: each position's mass outside the K is stored (float16) and streamed as
    ``teacher_tail``; a cache written without it streams no such column (its manifest has no
    ``tail``), and an example given without the tail it must keep is refused."""
    rng = np.random.default_rng(3)
    (tmp_path / "tail").mkdir()
    writer = CacheWriter(str(tmp_path / "tail"), shard_size=2, top_k=3, metadata={}, tail=True)
    written = {}
    for index in (4, 1, 6):
        length = int(rng.integers(1, 5))
        ids = rng.integers(0, 50, size=(length, 3)).astype(np.int32)
        probs = rng.dirichlet(np.ones(3), size=length).astype(np.float32)
        tail = rng.uniform(0, 0.5, size=length).astype(np.float32)
        writer.add(index, ids, probs, tail)
        written[index] = tail
    with pytest.raises(ValueError, match="example 9: a tail is needed"):
        writer.add(9, ids, probs)
    assert writer.close()["tail"] is True
    for item in stream_cache(str(tmp_path / "tail")).as_numpy_iterator():
        assert item["teacher_tail"].dtype == np.float16
        np.testing.assert_allclose(item["teacher_tail"], written[int(item["id"])], atol=1e-3)
    (tmp_path / "plain").mkdir()
    write_cache(tmp_path / "plain", [3, 5])
    manifest, items = read_cache(str(tmp_path / "plain"))[1], list(stream_cache(str(tmp_path / "plain")))
    assert "tail" not in manifest and all("teacher_tail" not in item for item in items)


INDICES = [7, 2, 9, 4, 11, 0, 5, 13, 3, 8]


@pytest.mark.parametrize("shuffle_buffer", [None, 4])
def test_stream_cache_yields_every_example_once_per_pass(tmp_path, shuffle_buffer):
    written, manifest = write_cache(tmp_path, INDICES)
    assert len(manifest["shards"]) == 4
    stream = stream_cache(str(tmp_path), expected_ids=sorted(INDICES), seed=3, shuffle_buffer=shuffle_buffer)
    assert stream.element_spec["teacher_ids"].dtype == tf.int32
    assert stream.element_spec["teacher_probs"].dtype == tf.float16
    seen = collections.Counter()
    for item in stream.as_numpy_iterator():
        index = int(item["id"])
        seen[index] += 1
        ids, probs = written[index]
        assert item["teacher_ids"].shape == ids.shape and item["teacher_probs"].shape == ids.shape
        assert item["teacher_probs"].dtype == np.float16
        np.testing.assert_array_equal(item["teacher_ids"], ids)
        np.testing.assert_array_equal(item["teacher_probs"], probs.astype(np.float16))
    assert seen == collections.Counter(INDICES)


@pytest.mark.parametrize(
    "expected", [INDICES[:-1], INDICES + [42], INDICES[:-1] + [42]], ids=["one missing", "one extra", "one different"]
)
def test_stream_cache_rejects_other_ids(tmp_path, expected):
    write_cache(tmp_path, INDICES)
    with pytest.raises(CacheMismatch) as error:
        stream_cache(str(tmp_path), expected_ids=np.array(expected))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path}: ")
    assert message.endswith(f"rerun the {tmp_path.name} stage")


@pytest.mark.parametrize("damage", ["truncated", "from another cache", "same size, other bytes", "missing"])
def test_a_damaged_shard_is_one_line_naming_it(tmp_path, damage):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_cache(tmp_path / "a", INDICES)
    write_cache(tmp_path / "b", [i + 100 for i in INDICES])
    shard = tmp_path / "a" / "shard-00001.tfrecord"
    if damage == "truncated":
        shard.write_bytes(shard.read_bytes()[:-7])
    elif damage == "from another cache":
        shard.write_bytes((tmp_path / "b" / "shard-00002.tfrecord").read_bytes())
    elif damage == "same size, other bytes":
        data = bytearray(shard.read_bytes())
        data[-5] ^= 0xFF
        shard.write_bytes(bytes(data))
    else:
        shard.unlink()
    with pytest.raises(CacheMismatch) as error:
        stream_cache(str(tmp_path / "a"), expected_ids=np.array(INDICES))
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{shard}: ")
    assert message.endswith(
        f"delete {tmp_path / 'a'} to rebuild it)" if damage == "missing" else f"delete {tmp_path / 'a'} to rebuild it"
    )


@pytest.mark.parametrize("shard_size", [40, 10], ids=["one shard", "four shards"])
def test_stream_cache_reshuffles_every_pass(tmp_path, shard_size):
    write_cache(tmp_path, list(range(40)), shard_size=shard_size)
    stream = stream_cache(str(tmp_path), expected_ids=np.arange(40), seed=1, shuffle_buffer=16)
    ids = [int(item["id"]) for item in stream.repeat(2).as_numpy_iterator()]
    first, second = ids[:40], ids[40:]
    assert sorted(first) == sorted(second) == list(range(40))
    assert first != second
    # without a buffer, every pass reads the shards in the same (interleaved) order
    plain = [int(item["id"]) for item in stream_cache(str(tmp_path)).repeat(2).as_numpy_iterator()]
    assert plain[:40] == plain[40:] and sorted(plain[:40]) == list(range(40))


@pytest.mark.parametrize("with_tail", [False, True])
def test_write_masked_top_k_stores_each_row_at_its_own_masked_positions(tmp_path, with_tail):
    """Rows with fewer masked positions than the busiest row of their batch have padding slots,
    and after sorting those can come before the real ones: every entry must still land at its
    own masked position (and nowhere else); so must its tail, when the teacher gives one."""
    from tfkd.teachers.topk_cache import write_masked_top_k

    chosen = np.zeros((3, 8), bool)
    chosen[0, [6]] = True  # one masked position, late in the row
    chosen[1, [1, 3, 5]] = True
    chosen[2, [2, 7]] = True
    masked = np.arange(24, dtype=np.int32).reshape(3, 8) + 10
    lengths = np.array([7, 6, 7])  # positions counted after a leading [CLS] (offset 1)

    def forward(masked_ids, positions):  # the "teacher" says: token id at that position, then -1
        at = tf.gather(masked_ids, positions, batch_dims=1)
        top = tf.stack([at, -tf.ones_like(at)], -1), tf.fill(tf.concat([tf.shape(at), [2]], 0), 0.25)
        return (*top, tf.cast(at, tf.float32) / 100.0) if with_tail else top  # a tail that names its token

    batches = [{"masked": tf.constant(masked), "chosen": tf.constant(chosen)}]
    writer = CacheWriter(str(tmp_path), 10, 2, {}, tail=with_tail)
    written = write_masked_top_k(
        writer, batches, np.array([0, 1, 2]), lengths, np.array([5, 6, 7]), forward, 3, offset=1
    )
    writer.close()
    assert written == 6
    entries, _ = read_cache(str(tmp_path))
    for row, example_id in enumerate((5, 6, 7)):
        ids, probs = entries[example_id]
        assert ids.shape == (lengths[row], 2)
        where = np.flatnonzero(chosen[row])
        np.testing.assert_array_equal(np.flatnonzero(probs.sum(-1)), where - 1)
        np.testing.assert_array_equal(ids[where - 1, 0], masked[row, where])
    if with_tail:
        tails = {int(item["id"]): item["teacher_tail"] for item in stream_cache(str(tmp_path)).as_numpy_iterator()}
        for row, example_id in enumerate((5, 6, 7)):
            expected = np.zeros(lengths[row])
            where = np.flatnonzero(chosen[row])
            expected[where - 1] = masked[row, where] / 100.0
            np.testing.assert_allclose(tails[example_id], expected, atol=2e-3)
