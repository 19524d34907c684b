"""``tfkd compare --reference REF --a A1.hyp [A2.hyp ...] --b B1.hyp [B2.hyp ...]``: both of
:mod:`tfkd.significance`'s tests between hypothesis files that any system wrote (one file per
seed, paired by order), without a run and without TensorFlow."""

import json

from tfkd.cli.errors import reports_errors
from tfkd.errors import DataError
from tfkd.text_files import decode_line, read_raw_lines


def register(add):
    compare = add(
        "compare",
        "is B better than A? significance of hypothesis files against a reference (no run needed)",
        "Corpus BLEU or chrF of two systems' hypothesis files against one reference file, one file per "
        "seed (seed i of A paired with seed i of B): the mean difference B - A, its 95% interval and "
        "two-sided p (test sentences resampled as clusters of their seeds), the per-seed differences "
        "and the seed-level p (paired t; needs 3 seeds). A difference is established when both are "
        "under 0.05.",
    )
    compare.add_argument("--reference", required=True, metavar="REF", help="the reference translations, a line each")
    compare.add_argument("--a", required=True, nargs="+", metavar="A.hyp", help="system A (baseline), a file a seed")
    compare.add_argument("--b", required=True, nargs="+", metavar="B.hyp", help="system B, a file a seed")
    compare.add_argument("--metric", choices=("bleu", "chrf"), default="bleu")
    compare.add_argument("--lowercase", action="store_true", help="case-insensitive scoring (sacreBLEU's -lc)")
    compare.add_argument("--tokenize", default="13a", help="BLEU's tokenizer (sacreBLEU's; default 13a)")
    compare.add_argument("--json", action="store_true", help="print one JSON object")
    compare.set_defaults(func=cmd_compare)


def read_lines(path):
    """A file's lines, as the data pipeline reads them (a one-line :class:`DataError` naming
    the file, and the line when it is not UTF-8)."""
    return [decode_line(line, path, number) for number, line in enumerate(read_raw_lines(path), start=1)]


@reports_errors
def cmd_compare(args):
    from tfkd.significance import compare

    if len(args.a) != len(args.b):
        raise DataError(f"--a gives {len(args.a)} files and --b {len(args.b)}: give one file a seed for each, paired")
    references = read_lines(args.reference)
    sides = []
    for files in (args.a, args.b):
        sides.append([read_lines(path) for path in files])
        for path, lines in zip(files, sides[-1]):
            if len(lines) != len(references):
                raise DataError(f"{path}: {len(lines)} lines for the {len(references)} of {args.reference}")
    result = compare(*sides, references, metric=args.metric, lowercase=args.lowercase, tokenize=args.tokenize)
    print(json.dumps(result) if args.json else describe(result))
    return 0


def describe(result):
    """The text ``tfkd compare`` prints of a :func:`tfkd.significance.compare` result."""
    seeds = result["seeds"]
    differences = " ".join(f"{d:+.2f}" for d in result["seed_differences"])
    if result["seed_p_value"] is None:
        seed_line = f"per-seed differences: {differences}; the seed-level test needs 3 seeds, not {seeds}"
    else:
        seed_line = f"per-seed differences: {differences}; seed-level p={result['seed_p_value']:.4f} (paired t)"
    if result["established"]:
        verdict = "established: both tests under 0.05"
    elif result["significant"]:
        verdict = "not established: the sentences say so, the seeds do not" + (" (fewer than 3)" if seeds < 3 else "")
    else:
        verdict = "not established"
    return "\n".join(
        [
            f"{result['metric']} over {result['examples']} sentences, {seeds} seed{'s' if seeds > 1 else ''} "
            f"({result['signature']})",
            f"A: {result['baseline']:.2f}   B: {result['candidate']:.2f}   (means over seeds)",
            f"B - A: {result['difference']:+.2f} [95% CI {result['ci_low']:+.2f}, {result['ci_high']:+.2f}], "
            f"two-sided p={result['p_value']:.4f} (sentence-cluster bootstrap, {result['resamples']} resamples)",
            seed_line,
            verdict,
        ]
    )
