"""How much a sequence-to-sequence student's encoder tells sentences apart: over the first N
sentences of a split, the mean norm of its output token vectors and the mean pairwise cosine
of the sentences' mean vectors (near 1: every sentence looks alike to the decoder's
cross-attention).

    python tools/source_encoding_stats.py runs/abnet_3s --students train,abnet_enc,transformer

Each student (``train``, ``baseline`` or a variant's name; ``NAME-sSEED`` for another seed's
copy) of the run directory is loaded from its train stage, and its ``encode`` (every tfkd
seq2seq student has one) reads the split's first ``--sentences`` sources, tokenized with the
run's vocabularies.
"""

import argparse
import os
import sys

import numpy as np


def encoding_stats(hidden, mask):
    """``{"token_norm", "mean_cosine"}`` of encoder outputs ``hidden``
    [B, S, H] with ``mask`` [B, S] (True on real tokens); at least two sentences."""
    hidden, mask = np.asarray(hidden, np.float64), np.asarray(mask, bool)
    if len(hidden) < 2:
        raise ValueError("at least two sentences")
    tokens = [hidden[i][mask[i]] for i in range(len(hidden))]
    means = np.stack([t.mean(0) for t in tokens])
    unit = means / np.linalg.norm(means, axis=1, keepdims=True)
    cosines = unit @ unit.T
    every = np.concatenate(tokens)
    return {
        "token_norm": float(np.linalg.norm(every, axis=1).mean()),
        "mean_cosine": float(cosines[~np.eye(len(cosines), dtype=bool)].mean()),
    }


def student_encodings(run_dir, student, split, sentences):
    """``(hidden, mask)`` of ``student``'s encoder over the first ``sentences`` sources of ``split``."""
    from tfkd.pipeline import open_finished_run
    from tfkd.plan import seed_of_stage
    from tfkd.stages import load_student

    family, _ = seed_of_stage(student)  # another seed's copy (train-s2) is its first seed's student
    spec, _, context = open_finished_run(run_dir, family)
    if family in (spec.variants or {}):
        context = context.with_spec(spec.variant(family))
    model = load_student(context, student)
    sources = context.task.corpus(context, split).source[:sentences]
    import tensorflow as tf

    pieces = context.tokenizers().source(sources)  # a list of id lists, in eager mode
    ids = tf.ragged.constant(pieces).to_tensor(model.pad_id)
    hidden, mask = model.encode(ids)
    return np.asarray(hidden), np.asarray(mask)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN")
    parser.add_argument("--students", default="train", help="comma-separated train stages (default: train)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--sentences", type=int, default=64)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.run_dir):
        print(f"source_encoding_stats: {args.run_dir}: no such run directory", file=sys.stderr)
        return 1
    print("| student | sentences | token-vector norm | mean pairwise cosine of sentence means |")
    print("|---|---|---|---|")
    for student in args.students.split(","):
        hidden, mask = student_encodings(args.run_dir, student, args.split, args.sentences)
        s = encoding_stats(hidden, mask)
        print(f"| {student} | {len(hidden)} | {s['token_norm']:.2f} | {s['mean_cosine']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
