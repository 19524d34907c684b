"""The ensemble's own stage: the teachers' caches combined (:mod:`tfkd.methods.ensemble`); each
teacher's cache is a shared teacher stage (:mod:`tfkd.teachers.student_caches`,
:mod:`tfkd.teachers.cmlm_stages`)."""

import logging
import time

import numpy as np

from tfkd.errors import CacheMismatch
from tfkd.methods.ensemble.combine import COMBINATIONS
from tfkd.progress import progress_bar
from tfkd.runner import Stage
from tfkd.teachers.topk_cache import CacheWriter, read_manifest, stream_cache

log = logging.getLogger("tfkd")


class SoftTargetsStage(Stage):
    """The caches of a student's teachers combined into one (``combine``: :mod:`.combine`),
    joined by example id. Bounded memory: the ids are taken in ranges of ``shard_size``
    examples, each range read from every cache in turn, combined and written in a random
    order (so a shard read through a shuffle buffer is not sorted by length or id)."""

    def __init__(self, name, caches, weights, combine, shard_size):
        self.name = name
        self.caches, self.weights, self.combine, self.shard_size = list(caches), list(weights), combine, shard_size

    def config(self, spec):
        # each cache's own key is upstream
        return {
            "caches": self.caches,
            "weights": [round(w, 12) for w in self.weights],
            "combine": self.combine,
            "shard_size": self.shard_size,
        }

    def run(self, context, workdir):
        directories = [context.runner.stage_dir(cache) for cache in self.caches]
        manifests = self._manifests_of_the_same_examples(directories)
        writer = CacheWriter(
            workdir,
            self.shard_size,
            sum(m["top_k"] for m in manifests),
            {
                "combine": self.combine,
                "teachers": [
                    {"cache": c, "weight": w, "top_k": m["top_k"], "temperature": m["temperature"]}
                    for c, w, m in zip(self.caches, self.weights, manifests, strict=True)
                ],
                "ids": "student target vocabulary",
            },
        )
        start = time.time()
        self._write_combined(writer, directories, manifests[0]["examples"])
        manifest = writer.close()
        seconds = time.time() - start
        log.info(
            "%s: %s of %d teachers (weights %s) for %d examples in %.0fs, %d entries a position, %.1f MB",
            self.name,
            self.combine,
            len(self.caches),
            ", ".join(f"{w:.3g}" for w in self.weights),
            manifest["examples"],
            seconds,
            manifest["top_k"],
            manifest["bytes"] / 1e6,
        )
        return {"examples": manifest["examples"], "entries": manifest["top_k"], "bytes": manifest["bytes"]}

    def _manifests_of_the_same_examples(self, directories):
        """The caches' manifests; a one-line error when they hold other training examples."""
        manifests = [read_manifest(d) for d in directories]
        first = manifests[0]
        for cache, manifest in zip(self.caches[1:], manifests[1:], strict=True):
            if (manifest["examples"], manifest.get("ids_sha256")) != (first["examples"], first.get("ids_sha256")):
                raise CacheMismatch(
                    f"{self.name}: the cache of {cache} holds {manifest['examples']} examples that are not the "
                    f"{first['examples']} of {self.caches[0]} (the teachers cached other training examples); "
                    "rerun their cache stages"
                )
        return manifests

    def _write_combined(self, writer, directories, examples):
        """Every example's teachers combined and written with ``writer``: the ids in ranges of
        ``shard_size``, each range read from every cache and written in a random order."""
        combine = COMBINATIONS[self.combine]
        rng = np.random.default_rng(0)
        bar = progress_bar(examples, "example")
        low = 0
        while True:
            entries = [self._read_range(d, low) for d in directories]
            if not entries[0]:
                break
            ids = sorted(entries[0])
            for other, cache in zip(entries[1:], self.caches[1:], strict=True):
                if sorted(other) != ids:
                    raise CacheMismatch(
                        f"{self.name}: the cache of {cache} has other example ids than {self.caches[0]}"
                    )
            for example in rng.permutation(ids):
                rows = [e[example] for e in entries]
                lengths = {r[0].shape[0] for r in rows}
                if len(lengths) != 1:
                    raise CacheMismatch(
                        f"{self.name}: example {example} has {sorted(lengths)} target positions in the "
                        f"caches of {', '.join(self.caches)}; rerun their cache stages"
                    )
                writer.add(example, *combine(rows, self.weights))
            if bar:
                bar.update(writer.count)
            low = ids[-1] + 1

    def _read_range(self, directory, low):
        """``{id: (ids, probs)}`` of the ``shard_size`` smallest ids ``>= low`` in the cache
        (one pass over its shards, holding at most ``2 * shard_size`` entries)."""
        found = {}
        for item in stream_cache(directory).as_numpy_iterator():
            example = int(item["id"])
            if example < low:
                continue
            found[example] = (item["teacher_ids"], item["teacher_probs"].astype(np.float32))
            if len(found) > 2 * self.shard_size:
                for drop in sorted(found)[self.shard_size :]:
                    del found[drop]
        return {k: found[k] for k in sorted(found)[: self.shard_size]}
