"""Top-K teacher caches: a teacher's top-K distributions, per training example, sharded on disk.

A cache stage (the soft-target method's ``teacher_cache``: every target position of every
pair; the mask-task and LightPAFF ``teacher_mlm_cache`` stages: the masked positions of one fixed
masking per example, :func:`write_masked_top_k`) keeps the top K of ``softmax(logits / T)``
(:func:`top_k_distribution`), renormalised, and writes them with a :class:`CacheWriter`.

On disk: sharded TFRecords (``shard-00000.tfrecord``) of examples with the example id (int64),
the top-K ids (int32) and probabilities (float16), ``[length, K]`` each, and in a cache that
keeps it (``"tail": true`` in its manifest) the mass outside the K (float16, ``[length]``: 2
bytes a position against the K's 6 K), plus ``manifest.json``
(counts, settings, each shard's size and SHA-256, and a hash of the ids). Training streams the
shards (:func:`stream_cache`), checked against the ids it trains on; nothing holds the whole
cache in memory.
"""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from tfkd.errors import CacheMismatch
from tfkd.failpoints import failpoint
from tfkd.progress import progress_bar
from tfkd.runner import sha256_file


def top_k_distribution(logits, top_k, temperature, with_tail=False):
    """``(ids, probs)``: the top K of ``softmax(logits / T)``, renormalised over K; with
    ``with_tail``, ``(ids, probs, tail)``, ``tail`` the mass outside the K (``[...]``)."""
    distribution = tf.nn.softmax(tf.cast(logits, tf.float32) / temperature, axis=-1)
    top_probs, top_ids = tf.math.top_k(distribution, k=top_k)
    inside = tf.reduce_sum(top_probs, axis=-1, keepdims=True)
    if not with_tail:
        return top_ids, top_probs / inside
    return top_ids, top_probs / inside, tf.maximum(1.0 - inside[..., 0], 0.0)


def _example(index, ids, probs, tail=None):
    feature = {
        "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(index)])),
        "length": tf.train.Feature(int64_list=tf.train.Int64List(value=[ids.shape[0]])),
        "ids": tf.train.Feature(bytes_list=tf.train.BytesList(value=[ids.astype("<i4").tobytes()])),
        "probs": tf.train.Feature(bytes_list=tf.train.BytesList(value=[probs.astype("<f2").tobytes()])),
    }
    if tail is not None:
        feature["tail"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[tail.astype("<f2").tobytes()]))
    # deterministic: the feature map in key order, so the same cache is the same bytes in every
    # process (the shards' SHA-256 in the manifest then identify their content)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


class CacheWriter:
    """Writes examples into shards of ``shard_size``; :meth:`close` writes the manifest. With
    ``tail``, every example keeps its positions' mass outside the K (the manifest says
    ``"tail": true``)."""

    def __init__(self, directory, shard_size, top_k, metadata, tail=False):
        self.directory, self.shard_size, self.top_k = directory, shard_size, top_k
        self.metadata = dict(metadata, tail=True) if tail else metadata
        self.tail = tail
        self.shards, self.count, self._writer = [], 0, None
        self._ids = []

    def add(self, index, ids, probs, tail=None):
        if (tail is not None) != self.tail:
            raise ValueError(f"example {index}: a tail is {'needed' if self.tail else 'not kept'} in this cache")
        if self.count % self.shard_size == 0:
            if self._writer:
                self._writer.close()
            name = f"shard-{len(self.shards):05d}.tfrecord"
            self.shards.append(name)
            self._writer = tf.io.TFRecordWriter(os.path.join(self.directory, name))
        self._writer.write(_example(index, ids, probs, tail))
        self._ids.append(int(index))
        self.count += 1
        failpoint("cache-example")

    def close(self):
        if self._writer:
            self._writer.close()
        sizes = {s: os.path.getsize(os.path.join(self.directory, s)) for s in self.shards}
        manifest = dict(
            self.metadata,
            examples=self.count,
            top_k=self.top_k,
            shards=self.shards,
            ids_sha256=ids_digest(self._ids),
            bytes=sum(sizes.values()),
            shard_bytes=sizes,
            shard_sha256={s: sha256_file(os.path.join(self.directory, s)) for s in self.shards},
        )
        with open(os.path.join(self.directory, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
        return manifest


def write_masked_top_k(writer, batches, rows, lengths, example_ids, forward, batch_size, offset=0):
    """Write a teacher's top K at the masked positions of fixed maskings, one cache entry per
    example: ``[length, K]`` ids and probabilities, zero where nothing was masked.

    Args:
        writer: a :class:`CacheWriter`.
        batches: padded batches ``{"masked" [B, L], "chosen" [B, L] bool}`` of the examples in
            ``rows`` order, ``batch_size`` a batch.
        rows, lengths, example_ids: each example's row, its length by row and its id by row.
        forward: ``(masked, positions) -> (ids, probs)`` at the chosen positions, ``[B, P, K]``,
            or ``(ids, probs, tail)`` (``tail [B, P]``: the mass outside the K) for a writer that
            keeps the tail.
        offset: where an example starts in ``masked`` (1 after a ``[CLS]``).

    Returns:
        The number of masked positions written.
    """
    from tfkd.masking import chosen_predictions

    bar = progress_bar(len(rows), "example")
    written = 0
    for step, batch in enumerate(batches):
        positions, _, weights = chosen_predictions(batch["masked"], batch["chosen"])
        ids, probs, *tail = (t.numpy() for t in forward(batch["masked"], positions))
        positions, real = positions.numpy(), weights.numpy() > 0
        for j, row in enumerate(rows[step * batch_size : (step + 1) * batch_size]):
            # a row with fewer masked positions than the batch's busiest has padding slots, which
            # may come before its real ones: select by weight, not by count
            found = positions[j][real[j]] - offset
            full_ids = np.zeros((lengths[row], writer.top_k), np.int32)
            full_probs = np.zeros((lengths[row], writer.top_k), np.float32)
            full_ids[found], full_probs[found] = ids[j][real[j]], probs[j][real[j]]
            full_tail = None
            if tail:  # positions that were not masked keep none
                full_tail = np.zeros(lengths[row], np.float32)
                full_tail[found] = tail[0][j][real[j]]
            writer.add(example_ids[row], full_ids, full_probs, full_tail)
            written += int(real[j].sum())
        if bar:
            bar.update(writer.count)
    return written


def ids_digest(ids):
    """An order-independent digest of example ids (the manifest's ``ids_sha256``)."""
    return hashlib.sha256(np.sort(np.asarray(ids, np.int64)).astype("<i8").tobytes()).hexdigest()


_FEATURES = {
    "index": tf.io.FixedLenFeature([], tf.int64),
    "length": tf.io.FixedLenFeature([], tf.int64),
    "ids": tf.io.FixedLenFeature([], tf.string),
    "probs": tf.io.FixedLenFeature([], tf.string),
}


def check_shards(directory, manifest):
    """Each shard the manifest lists is there with the size and SHA-256 it was written with (a
    truncated or swapped shard would otherwise fail deep inside a training step, or train on
    the wrong targets)."""
    recorded, sums = manifest.get("shard_bytes"), manifest.get("shard_sha256") or {}
    for name in manifest["shards"]:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            raise CacheMismatch(f"{path}: missing; the teacher cache is damaged (delete {directory} to rebuild it)")
        if recorded is not None and os.path.getsize(path) != recorded[name]:
            raise CacheMismatch(
                f"{path}: {os.path.getsize(path)} bytes, but the cache's manifest.json records "
                f"{recorded[name]} (truncated or from another cache); delete {directory} to rebuild it"
            )
        if name in sums and sha256_file(path) != sums[name]:
            raise CacheMismatch(
                f"{path}: its SHA-256 is not the one the cache's manifest.json records (changed or "
                f"from another cache); delete {directory} to rebuild it"
            )
    if recorded is None and "bytes" in manifest:  # written before per-shard sizes were recorded
        total = sum(os.path.getsize(os.path.join(directory, name)) for name in manifest["shards"])
        if total != manifest["bytes"]:
            raise CacheMismatch(
                f"{directory}: the shards hold {total} bytes, but manifest.json records "
                f"{manifest['bytes']} (truncated or from another cache); delete it to rebuild it"
            )


def read_manifest(directory):
    with open(os.path.join(directory, "manifest.json")) as f:
        return json.load(f)


def stream_cache(directory, expected_ids=None, seed=None, shuffle_buffer=None, cycle_length=16):
    """A ``tf.data.Dataset`` of ``{"id", "teacher_ids" [T, K] int32, "teacher_probs" [T, K]
    float16}`` (and ``"teacher_tail" [T]`` float16 when the cache keeps it) read from the shards
    as it is consumed.

    With ``shuffle_buffer``, the shard order is shuffled on every pass (``seed``), up to
    ``cycle_length`` shards are interleaved and the records shuffled in a buffer of that many
    records: memory is bounded by the buffer, not by the cache. (The cache stage writes its
    batches in a random order, so a shard is not sorted by length.) ``expected_ids`` (the
    training examples' ids) must be exactly the cached ids, checked against the manifest.
    """
    manifest = read_manifest(directory)
    check_shards(directory, manifest)
    if expected_ids is not None:
        if manifest["examples"] != len(expected_ids) or manifest.get("ids_sha256") != ids_digest(expected_ids):
            stage = os.path.basename(os.path.normpath(directory))
            raise CacheMismatch(
                f"{directory}: the teacher cache holds {manifest['examples']} examples that are not the "
                f"{len(expected_ids)} training examples; rerun the {stage} stage"
            )
    top_k = manifest["top_k"]
    files = tf.data.Dataset.from_tensor_slices([os.path.join(directory, s) for s in manifest["shards"]])
    if shuffle_buffer and len(manifest["shards"]) > 1:
        files = files.shuffle(len(manifest["shards"]), seed=seed, reshuffle_each_iteration=True)
    records = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(cycle_length, len(manifest["shards"]) or 1),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )

    features = dict(_FEATURES, tail=tf.io.FixedLenFeature([], tf.string)) if manifest.get("tail") else _FEATURES

    def parse(record):
        example = tf.io.parse_single_example(record, features)
        ids = tf.reshape(tf.io.decode_raw(example["ids"], tf.int32, little_endian=True), [-1, top_k])
        probs = tf.reshape(tf.io.decode_raw(example["probs"], tf.float16, little_endian=True), [-1, top_k])
        columns = {"id": example["index"], "teacher_ids": ids, "teacher_probs": probs}
        if "tail" in features:
            columns["teacher_tail"] = tf.io.decode_raw(example["tail"], tf.float16, little_endian=True)
        return columns

    records = records.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle_buffer:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return records


def read_cache(directory):
    """``{example id: (ids [T, K] int32, probs [T, K] float32)}`` and the manifest, all in
    memory: for inspecting small caches and tests (training uses :func:`stream_cache`)."""
    manifest = read_manifest(directory)
    entries = {}
    for item in stream_cache(directory).as_numpy_iterator():
        entries[int(item["id"])] = (item["teacher_ids"], item["teacher_probs"].astype(np.float32))
    if len(entries) != manifest["examples"]:
        raise ValueError(f"{directory}: manifest lists {manifest['examples']} examples, shards hold {len(entries)}")
    return entries, manifest
