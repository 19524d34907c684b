"""How degenerate a student's translations are: the share of distinct hypotheses (a decoder that
ignores its source writes the same sentence for many inputs), the share of adjacent repeated
words ("a a a", non-autoregressive decoding's known failure), the most frequent hypothesis and
how often it occurs, and the mean length in words (against the references' when given).

    python tools/hypothesis_stats.py runs/abnet_3s/evaluate runs/abnet_3s/transformer_evaluate \
        --split test --references ../shared/data/multi30k_deen/test.en

Each argument is an evaluate stage's folder (its ``SPLIT.hyp`` is read) or a hypothesis file.
Words are whitespace-separated tokens of the detokenized output.
"""

import argparse
import collections
import os
import statistics
import sys


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def hypothesis_stats(lines):
    """``{"sentences", "distinct", "adjacent_repeats", "most_common", "most_common_count",
    "mean_words"}`` of a list of output lines: ``distinct`` is the share of different lines,
    ``adjacent_repeats`` the share of word pairs next to each other that are the same word."""
    if not lines:
        raise ValueError("no hypotheses")
    words = [line.split() for line in lines]
    pairs = sum(max(len(w) - 1, 0) for w in words)
    repeats = sum(sum(a == b for a, b in zip(w, w[1:])) for w in words)
    most_common, count = collections.Counter(" ".join(w) for w in words).most_common(1)[0]
    return {
        "sentences": len(lines),
        "distinct": len(set(map(tuple, words))) / len(lines),
        "adjacent_repeats": repeats / pairs if pairs else 0.0,
        "most_common": most_common,
        "most_common_count": count,
        "mean_words": statistics.mean(len(w) for w in words),
    }


def hypothesis_file(path, split):
    """``path`` itself, or ``path/SPLIT.hyp`` when it is a folder (an evaluate stage's)."""
    return os.path.join(path, f"{split}.hyp") if os.path.isdir(path) else path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", nargs="+", help="evaluate stage folders or hypothesis files")
    parser.add_argument("--split", default="test", help="the split whose SPLIT.hyp a folder holds (default: test)")
    parser.add_argument("--references", help="the split's reference file: its mean length is printed too")
    args = parser.parse_args(argv)
    rows = []
    for output in args.outputs:
        path = hypothesis_file(output, args.split)
        if not os.path.isfile(path):
            print(f"hypothesis_stats: {path}: no such file", file=sys.stderr)
            return 1
        rows.append((output, hypothesis_stats(read_lines(path))))
    if args.references:
        rows.append((f"{args.references} (references)", hypothesis_stats(read_lines(args.references))))
    print("| output | sentences | distinct | adjacent repeats | most common (times) | mean words |")
    print("|---|---|---|---|---|---|")
    for name, s in rows:
        print(
            f"| {name} | {s['sentences']} | {s['distinct']:.3f} | {s['adjacent_repeats']:.3f} | "
            f"{s['most_common'][:40]!r} ({s['most_common_count']}) | {s['mean_words']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
