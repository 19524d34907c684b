"""The combined cache: joined by example id in ranges of ``shard_size`` examples (bounded
memory), whatever order each teacher's cache was written in, equal to combining every example's
entries directly; caches of other examples are refused in one line."""

import types

import numpy as np
import pytest

from tfkd.errors import CacheMismatch
from tfkd.methods.ensemble.combine import mixture, product
from tfkd.methods.ensemble.stages import SoftTargetsStage
from tfkd.teachers.topk_cache import CacheWriter, read_cache, stream_cache


def write_cache(directory, examples, top_k, seed, shard_size):
    """A cache of ``examples`` ({id: length}), written in a random order."""
    rng = np.random.default_rng(seed)
    directory.mkdir()
    writer = CacheWriter(str(directory), shard_size, top_k, {"temperature": 1.0})
    for example in rng.permutation(sorted(examples)):
        ids = rng.integers(0, 50, (examples[example], top_k)).astype(np.int32)
        probs = rng.random((examples[example], top_k)).astype(np.float32)
        writer.add(int(example), ids, probs / probs.sum(-1, keepdims=True))
    writer.close()


def context_of(stage_dirs):
    return types.SimpleNamespace(runner=types.SimpleNamespace(stage_dir=lambda name: str(stage_dirs[name])))


@pytest.mark.parametrize("combine", ["mixture", "product"])
def test_the_combined_cache_is_every_examples_teachers_combined(tmp_path, combine):
    rng = np.random.default_rng(0)
    examples = {int(i): int(rng.integers(1, 9)) for i in sorted(rng.choice(100, 37, replace=False))}  # ids with gaps
    dirs = {"a": tmp_path / "a", "b": tmp_path / "b", "out": tmp_path / "out"}
    write_cache(dirs["a"], examples, 4, seed=1, shard_size=10)
    write_cache(dirs["b"], examples, 3, seed=2, shard_size=16)
    dirs["out"].mkdir()
    stage = SoftTargetsStage("out", ["a", "b"], [0.25, 0.75], combine, shard_size=8)  # 5 ranges of ids
    results = stage.run(context_of(dirs), str(dirs["out"]))
    assert results["examples"] == 37 and results["entries"] == 7
    combined, manifest = read_cache(str(dirs["out"]))
    a, _ = read_cache(str(dirs["a"]))
    b, _ = read_cache(str(dirs["b"]))
    assert sorted(combined) == sorted(examples) and len(manifest["shards"]) == 5
    assert manifest["combine"] == combine and [t["cache"] for t in manifest["teachers"]] == ["a", "b"]
    function = {"mixture": mixture, "product": product}[combine]
    for example in examples:
        ids, probs = function([a[example], b[example]], [0.25, 0.75])
        np.testing.assert_array_equal(combined[example][0], ids)
        np.testing.assert_allclose(combined[example][1], probs, atol=1e-3)  # float16 on disk
    # written in a random order: a shard read through a shuffle buffer is not sorted by id
    order = [int(item["id"]) for item in stream_cache(str(dirs["out"])).as_numpy_iterator()]
    assert sorted(order) == sorted(examples) and order != sorted(order)


def test_caches_of_other_examples_are_refused_in_one_line(tmp_path):
    dirs = {"a": tmp_path / "a", "b": tmp_path / "b", "out": tmp_path / "out"}
    write_cache(dirs["a"], {0: 3, 1: 2, 2: 4}, 2, seed=1, shard_size=10)
    write_cache(dirs["b"], {0: 3, 1: 2, 5: 4}, 2, seed=2, shard_size=10)
    dirs["out"].mkdir()
    stage = SoftTargetsStage("out", ["a", "b"], [0.5, 0.5], "mixture", shard_size=8)
    with pytest.raises(CacheMismatch) as error:
        stage.run(context_of(dirs), str(dirs["out"]))
    assert str(error.value) == (
        "out: the cache of b holds 3 examples that are not the 3 of a (the teachers cached other training "
        "examples); rerun their cache stages"
    )
