"""Peak memory of soft-target training from a small and a large teacher cache.

    nice -n 19 python tools/bench_cache_stream.py [--size-mb 20 2048] [--steps 50]

For each size a fresh process writes a synthetic cache of about that many MiB with
``CacheWriter`` and trains a tiny Transformer student with ``SoftTargetDistiller`` for
``--steps`` steps on batches streamed from it (``stream_cache`` -> ``seq2seq_dataset``,
shuffled and repeated as in training). Every size draws examples from the same shapes (source
and target lengths 60-120 tokens, top-K 128, about 70 KB a record), so only the number of
examples differs. Reported per size: RSS after building the corpus and after writing the
cache, the peak RSS while training (VmRSS sampled every 50 ms) and ``ru_maxrss`` of the whole
process. If the cache streams from disk, the peaks of the largest cache exceed those of the
smallest by less than ``--limit-mb``.
"""

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

MIN_LEN, MAX_LEN = 60, 120  # source and target lengths, tokens
MAX_TOKENS = 128
VOCAB = 1000
FIRST_WORD = 5  # ids below are the special tokens
RECORD_OVERHEAD = 80  # bytes of a cache record besides ids (int32) and probs (float16)


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class RssSampler:
    """The largest VmRSS seen by a background thread while the ``with`` block runs."""

    def __init__(self, interval=0.05):
        self.interval, self.peak = interval, rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def cache_path(workdir, size_mb):
    return os.path.join(workdir, f"cache-{size_mb:g}mb")


def run_child(args):
    """Write one cache, train from it, print ``RESULT {json}``."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfkd import registry
    from tfkd.data import SpecialIds
    from tfkd.distillation.soft_target_distiller import SoftTargetDistiller
    from tfkd.models.transformer import TransformerSeq2Seq
    from tfkd.tasks.translation.data import TokenizedCorpus, seq2seq_dataset
    from tfkd.teachers.topk_cache import CacheWriter, stream_cache

    size_mb = args.size_mb[0]
    rng = np.random.default_rng(args.seed)
    mean_record = ((MIN_LEN + MAX_LEN) / 2 + 1) * args.top_k * 6 + RECORD_OVERHEAD
    count = max(1, round(size_mb * 2**20 / mean_record))
    source_lengths = rng.integers(MIN_LEN, MAX_LEN + 1, count)
    target_lengths = rng.integers(MIN_LEN, MAX_LEN + 1, count)

    def tokens(lengths):
        values = rng.integers(FIRST_WORD, VOCAB, int(lengths.sum()), dtype=np.int32)
        return tf.RaggedTensor.from_row_lengths(values, lengths)

    corpus = TokenizedCorpus(tokens(source_lengths), tokens(target_lengths), np.arange(count))
    rss_corpus = rss_mb()

    cache_dir = cache_path(args.workdir, size_mb)
    os.makedirs(cache_dir)
    start = time.time()
    writer = CacheWriter(cache_dir, args.shard_size, args.top_k, {"synthetic": True})
    for example_id, length in enumerate(target_lengths):
        shape = (int(length) + 1, args.top_k)  # the target's positions and its EOS
        probs = rng.random(shape, dtype=np.float32)
        writer.add(
            example_id, rng.integers(FIRST_WORD, VOCAB, shape, dtype=np.int32), probs / probs.sum(axis=1, keepdims=True)
        )
    manifest = writer.close()
    write_seconds = time.time() - start
    rss_written = rss_mb()

    keras.utils.set_random_seed(args.seed)
    dataset = seq2seq_dataset(
        corpus,
        SpecialIds(pad=0, bos=2, eos=3, unk=1),
        batch_tokens=args.batch_tokens,
        max_tokens=MAX_TOKENS,
        bucket_width=8,
        shuffle=True,
        seed=args.seed,
        shuffle_buffer=100000,
        repeat=True,  # data.shuffle_buffer's default: streamed columns bring their own
        columns=stream_cache(cache_dir, expected_ids=corpus.kept, seed=args.seed, shuffle_buffer=args.shuffle_buffer),
    )
    student = TransformerSeq2Seq(
        VOCAB, VOCAB, encoder_layers=1, decoder_layers=1, hidden_dim=64, intermediate_dim=128, num_heads=2, pad_id=0
    )
    trainer = SoftTargetDistiller(
        student, registry.lookup("task", "translation"), loss_weights={"soft": 0.5, "xe": 0.5}, label_smoothing=0.1
    )
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    trainer({"source_ids": tf.ones([1, 4], tf.int32), "decoder_ids": tf.ones([1, 4], tf.int32)})
    trainer.optimizer.build(trainer.trainable_variables)
    with RssSampler() as sampler:
        start = time.time()
        history = trainer.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
        train_seconds = time.time() - start

    result = {
        "size_mb": size_mb,
        "examples": manifest["examples"],
        "shards": len(manifest["shards"]),
        "cache_mb": manifest["bytes"] / 2**20,
        "write_s": write_seconds,
        "train_s": train_seconds,
        "rss_corpus_mb": rss_corpus,
        "rss_written_mb": rss_written,
        "train_peak_mb": sampler.peak,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "metrics": {name: float(values[-1]) for name, values in history.history.items()},
        "tf": tf.__version__,
        "keras": keras.__version__,
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_size(args, size_mb):
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--size-mb",
        f"{size_mb:g}",
        "--steps",
        str(args.steps),
        "--workdir",
        args.workdir,
        "--top-k",
        str(args.top_k),
        "--shard-size",
        str(args.shard_size),
        "--shuffle-buffer",
        str(args.shuffle_buffer),
        "--batch-tokens",
        str(args.batch_tokens),
        "--seed",
        str(args.seed),
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{size_mb:g} MiB run failed (exit code {proc.returncode})")
    if not args.keep:
        shutil.rmtree(cache_path(args.workdir, size_mb))
    return json.loads(lines[-1][len("RESULT ") :])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size-mb",
        type=float,
        nargs="+",
        default=[20, 2048],
        help="cache sizes in MiB; the growth is largest minus smallest",
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--limit-mb", type=float, default=300, help="allowed peak RSS growth")
    parser.add_argument("--top-k", type=int, default=128)
    parser.add_argument("--shard-size", type=int, default=2000, help="examples per cache shard")
    parser.add_argument(
        "--shuffle-buffer",
        type=int,
        default=256,
        help="distill.cache.shuffle_buffer: examples held while streaming. These records are "
        "~90 KB (so that 2 GB needs few examples), so 256 of them hold ~23 MB, what the "
        "default 10,000 holds of real ~1.5 KB records (30 positions, K=8)",
    )
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="where caches are written (default: a new dir in /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the caches and the workdir")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)

    print("command:", shlex.join(["python", *sys.argv]), f"(niceness {os.nice(0)})")
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    made_workdir = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="bench_cache_stream-", dir="/tmp")
    os.makedirs(args.workdir, exist_ok=True)
    free_mb = shutil.disk_usage(args.workdir).free / 2**20
    needed_mb = 1.1 * (sum(args.size_mb) if args.keep else max(args.size_mb))
    if free_mb < needed_mb:
        raise SystemExit(f"{args.workdir}: {free_mb:.0f} MiB free, the caches need about {needed_mb:.0f}")
    print(f"workdir: {args.workdir} ({free_mb:.0f} MiB free)\n")

    results = []
    try:
        for size_mb in sorted(args.size_mb):
            results.append(run_size(args, size_mb))
            print(f"  {size_mb:g} MiB cache done", flush=True)
    finally:
        if made_workdir and not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)

    columns = [
        ("cache MiB", "cache_mb", ".0f"),
        ("examples", "examples", "d"),
        ("shards", "shards", "d"),
        ("write s", "write_s", ".0f"),
        ("train s", "train_s", ".1f"),
        ("RSS corpus", "rss_corpus_mb", ".0f"),
        ("RSS written", "rss_written_mb", ".0f"),
        ("train peak", "train_peak_mb", ".0f"),
        ("ru_maxrss", "ru_maxrss_mb", ".0f"),
    ]
    print("\n" + "  ".join(f"{title:>11}" for title, _, _ in columns))
    for r in results:
        print("  ".join(f"{r[key]:>11{fmt}}" for _, key, fmt in columns))
    for r in results:
        print(
            f"{r['cache_mb']:.0f} MiB, after training: "
            + ", ".join(f"{name} {value:.4g}" for name, value in r["metrics"].items())
        )
    print(
        f"(RSS in MiB; TensorFlow {results[0]['tf']}, Keras {results[0]['keras']}; {args.steps} steps, "
        f"top-K {args.top_k}, {args.batch_tokens} batch tokens, shuffle buffer {args.shuffle_buffer})"
    )

    small, large = results[0], results[-1]
    growth = {key: large[key] - small[key] for key in ("train_peak_mb", "ru_maxrss_mb")}
    print(
        f"\ngrowth {small['cache_mb']:.0f} -> {large['cache_mb']:.0f} MiB cache: "
        f"train peak {growth['train_peak_mb']:+.0f} MiB, ru_maxrss {growth['ru_maxrss_mb']:+.0f} MiB"
    )
    passed = max(growth.values()) < args.limit_mb
    print(f"{'PASS' if passed else 'FAIL'}: limit {args.limit_mb:g} MiB on both")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
