"""How often does a paired test call two equal students different, and how often does it find a
real difference? Simulates students scored per test example over seeds and applies:

- ``pooled``: the test tfkd used before, sacreBLEU's paired-bootstrap p (centred absolute
  differences) over every seed's examples pooled as if they were more examples;
- ``cluster``: :func:`tfkd.significance.cluster_test`'s sentence-cluster bootstrap alone;
- ``seed t``: its paired t over the per-seed differences alone;
- ``established``: both of the last two at 0.05, the verdict tfkd's tables mark.

A student's score on example ``i`` under seed ``s`` is ``difficulty_i + shift_s + noise``
(difficulty shared by both students, ``shift_s`` a training run's own quality, drawn per
student and seed with standard deviation ``--seed-sd``), its metric the mean over examples;
the candidate adds ``--effect``. Prints a Markdown table of rejection rates at 0.05 with their
Monte-Carlo standard errors::

    python tools/significance_calibration.py --trials 1000
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfkd.significance import ALPHA, RESAMPLES, cluster_test, resample_counts  # noqa: E402


def mean_score(sums):
    return sums[:, 0] / sums[:, 1]


def simulate(rng, seeds=3, examples=200, effect=0.0, seed_sd=0.0, noise_sd=1.0):
    """``(baseline, candidate)``, each ``[seeds, examples, 2]`` statistics (score, 1)."""
    difficulty = rng.normal(0, 1, examples)

    def student(delta):
        shift = rng.normal(0, seed_sd, (seeds, 1)) if seed_sd else np.zeros((seeds, 1))
        scores = difficulty + shift + delta + rng.normal(0, noise_sd, (seeds, examples))
        return np.stack([scores, np.ones_like(scores)], -1)

    return student(0.0), student(effect)


def pooled_p(baseline, candidate, resamples=RESAMPLES, seed=0):
    """tfkd's former test: every seed's examples pooled, sacreBLEU's paired-bootstrap p."""
    from sacrebleu.significance import _compute_p_value

    a, b = baseline.reshape(-1, 2), candidate.reshape(-1, 2)
    counts = resample_counts(len(a), resamples, seed).astype("float64")
    differences = mean_score(counts @ b) - mean_score(counts @ a)
    absolute = np.abs(differences)
    observed = abs(mean_score(b.sum(0, keepdims=True))[0] - mean_score(a.sum(0, keepdims=True))[0])
    return _compute_p_value(absolute - absolute.mean(), observed)


def rejection_rates(trials, seeds=3, examples=200, effect=0.0, seed_sd=0.0, resamples=RESAMPLES, seed=0):
    """``{test: share of trials that rejected at 0.05}``."""
    rng = np.random.default_rng(seed)
    rejected = {"pooled": 0, "cluster": 0, "seed t": 0, "established": 0}
    for trial in range(trials):
        baseline, candidate = simulate(rng, seeds, examples, effect, seed_sd)
        result = cluster_test(mean_score, baseline, candidate, resamples=resamples, seed=trial)
        rejected["pooled"] += pooled_p(baseline, candidate, resamples, seed=trial) < ALPHA
        rejected["cluster"] += result["significant"]
        rejected["seed t"] += result["seed_p_value"] is not None and result["seed_p_value"] < ALPHA
        rejected["established"] += result["established"]
    return {name: count / trials for name, count in rejected.items()}


SCENARIOS = (
    ("equal students, no seed variation", 0.0, 0.0),
    ("equal students, seed variation (sd 0.1)", 0.0, 0.1),
    ("real difference 0.25, no seed variation", 0.25, 0.0),
    ("real difference 0.5, seed variation (sd 0.1)", 0.5, 0.1),
)


def t_power(seeds, standardized_effect):
    """Power of the two-sided paired t over ``seeds`` per-seed differences at 0.05, when their
    mean is ``standardized_effect`` times their standard deviation (noncentral t)."""
    from scipy import stats

    df, ncp = seeds - 1, standardized_effect * np.sqrt(seeds)
    critical = stats.t.ppf(1 - ALPHA / 2, df)
    # scipy's noncentral t gives nan far in its tails: there the upper tail is 1, the lower 0
    upper, lower = stats.nct.sf(critical, df, ncp), stats.nct.cdf(-critical, df, ncp)
    return float((1.0 if np.isnan(upper) else upper) + (0.0 if np.isnan(lower) else lower))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    args = parser.parse_args(argv)
    print(f"{args.trials} trials, {args.seeds} seeds, {args.examples} examples, {args.resamples} resamples; ")
    print("share rejected at 0.05 (Monte-Carlo standard error in brackets)\n")
    print("| scenario | pooled (sacreBLEU p) | sentence-cluster | seed t | established (both) |")
    print("|---|---|---|---|---|")
    for label, effect, seed_sd in SCENARIOS:
        rates = rejection_rates(args.trials, args.seeds, args.examples, effect, seed_sd, args.resamples)
        cells = [f"{r:.3f} ({np.sqrt(r * (1 - r) / args.trials):.3f})" for r in rates.values()]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\npower of the seed-level t at 0.05 (mean per-seed difference / its standard deviation)\n")
    effects = (1, 2, 3, 4, 6)
    print("| seeds | " + " | ".join(f"{e} sd" for e in effects) + " |")
    print("|---" * (len(effects) + 1) + "|")
    for seeds in (3, 4, 5):
        print(f"| {seeds} | " + " | ".join(f"{t_power(seeds, e):.2f}" for e in effects) + " |")


if __name__ == "__main__":
    main()
