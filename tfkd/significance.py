"""Is one student better than another, or is it noise? Two tests, both two-sided, and a
difference is *established* only when both reject at 0.05:

- **Sentence-cluster paired bootstrap** (Koehn 2004; Efron and Tibshirani 1993, ch. 16). Test
  examples (sentences, labelled texts, LM blocks) are resampled with replacement; a resampled
  example brings every seed's output of it, for both students, so an example's noise counts
  once however many seeds there are. On each resample the statistic is the mean over seeds of
  ``score(candidate seed s) - score(baseline seed s)``. The 95% interval is the 2.5th and
  97.5th percentile of those differences and the p-value is the two-sided percentile p,
  ``min(1, 2 * min(#(d* <= 0) + 1, #(d* >= 0) + 1) / (resamples + 1))``: p < 0.05 exactly when
  the interval (up to one resample) excludes zero, and on equal systems it rejects in about 5%
  of cases. (sacreBLEU's ``--paired-bs`` p, the share of centred absolute differences above the
  observed one, rejected equal systems in about 9% of cases; ``tools/significance_calibration.py``
  measures both.) Scores come from each metric's additive sufficient statistics, BLEU's and
  chrF's from sacreBLEU's own metric objects.
- **Seed-level test**: a paired t-test over the per-seed differences (``n - 1`` degrees of
  freedom). It counts the variation between training runs that the bootstrap, which holds the
  trained students fixed, cannot see. With fewer than 3 seeds it does not judge
  (``seed_p_value`` is ``None``). A sign-flip permutation over 3 seeds can never go below
  p = 0.25; the t-test can establish a consistent gain with 3 seeds (its power is printed by
  ``tools/significance_calibration.py``).

Every test returns one dict::

    {"metric": "BLEU", "baseline": 30.09, "candidate": 30.65, "difference": 0.56,
     "ci_low": 0.12, "ci_high": 1.01, "p_value": 0.012, "significant": True,
     "seed_differences": [0.61, 0.40, 0.67], "seed_p_value": 0.021, "established": True,
     "seeds": 3, "examples": 1000, "resamples": 1000, "seed": 12345, "test": "..."}

``baseline`` and ``candidate`` are means over seeds; ``significant`` is the bootstrap's
verdict alone, ``established`` both tests'. :func:`holm` adjusts a table's p-values for the
number of its comparisons. Importing this module does not import TensorFlow.
"""

import functools
import statistics

import numpy as np

SEED = 12345  # sacreBLEU's default SACREBLEU_SEED
RESAMPLES = 1000
ALPHA = 0.05
MIN_SEEDS = 3  # the seed-level test judges from this many seeds on
TEST_NAME = "two-sided sentence-cluster paired bootstrap + paired t over seeds"


def seed_summary(values):
    """``{"mean", "std" (sample standard deviation; 0 for one value), "n", "values"}``."""
    values = [float(v) for v in values]
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "values": values,
    }


def resample_counts(n, resamples=RESAMPLES, seed=SEED):
    """``[resamples, n]``: how often each of ``n`` examples is drawn in each resample (``n``
    draws with replacement, NumPy's ``default_rng(seed)``)."""
    indices = np.random.default_rng(seed).integers(0, n, (resamples, n))
    flat = (indices + n * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n * resamples).reshape(resamples, n)


def two_sided_p(differences):
    """The two-sided percentile bootstrap p of resampled differences against 0."""
    differences = np.asarray(differences)
    below, above = np.sum(differences <= 0), np.sum(differences >= 0)
    return float(min(1.0, 2 * (min(below, above) + 1) / (len(differences) + 1)))


def seed_level_p(seed_differences):
    """Two-sided paired t-test p over per-seed differences; ``None`` under :data:`MIN_SEEDS`
    seeds. Differences that are all equal give 0 (all 0: 1)."""
    from scipy import stats

    d = np.asarray(seed_differences, dtype="float64")
    if len(d) < MIN_SEEDS:
        return None
    if np.allclose(d, d[0]):
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def cluster_test(score, baseline, candidate, metric="score", resamples=RESAMPLES, seed=SEED):
    """Both tests of two students from per-example sufficient statistics.

    ``baseline`` and ``candidate`` are ``[seeds, examples, d]`` arrays (seed ``s`` of one is
    paired with seed ``s`` of the other, example ``i`` is the same test example in every seed);
    ``score`` maps summed statistics ``[m, d]`` to ``m`` scores (accuracy from ``(correct,
    1)``, BLEU from sacreBLEU's n-gram counts, ...). A difference is candidate minus baseline."""
    baseline, candidate = (np.asarray(x, dtype="float64") for x in (baseline, candidate))
    if baseline.shape != candidate.shape or not baseline.shape[1]:
        raise ValueError(f"paired test: baseline statistics {baseline.shape} against candidate {candidate.shape}")
    seeds, n, _ = baseline.shape
    observed = [score(x.sum(1)) for x in (baseline, candidate)]  # [seeds] each
    seed_differences = observed[1] - observed[0]
    counts = resample_counts(n, resamples, seed).astype("float64")
    resampled = [counts @ x for x in (baseline, candidate)]  # [seeds, resamples, d]
    scores = [score(r.reshape(seeds * resamples, -1)).reshape(seeds, resamples) for r in resampled]
    # rounded: a resample where the students tie is a tie, not a float's last bit either way
    differences = np.round((scores[1] - scores[0]).mean(0), 9)
    low, high = np.percentile(differences, [2.5, 97.5])
    p = two_sided_p(differences)  # 1 when the two agree on every resample
    seed_p = seed_level_p(seed_differences)
    return {
        "metric": metric,
        "baseline": round(float(np.mean(observed[0])), 4),
        "candidate": round(float(np.mean(observed[1])), 4),
        "difference": round(float(np.mean(seed_differences)), 4),
        "ci_low": round(float(low), 4),
        "ci_high": round(float(high), 4),
        "p_value": round(p, 4),
        "significant": p < ALPHA,
        "seed_differences": [round(float(d), 4) for d in seed_differences],
        "seed_p_value": None if seed_p is None else round(seed_p, 4),
        "established": bool(p < ALPHA and seed_p is not None and seed_p < ALPHA),
        "seeds": int(seeds),
        "examples": int(n),
        "resamples": int(resamples),
        "seed": seed,
        "test": TEST_NAME,
    }


def holm(p_values):
    """Holm's step-down adjustment of a family of p-values (``None`` stays ``None``): the
    ``k``-th smallest of ``m`` is multiplied by ``m - k + 1``, made non-decreasing, capped at 1.
    (statsmodels' ``multipletests(method="holm")`` computes the same; it is not a dependency.)"""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted, running = [None] * len(p_values), 0.0
    for k, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (len(present) - k) * p))
        adjusted[i] = round(running, 4)
    return adjusted


def with_holm(tests):
    """``tests`` (a list of result dicts of one family) with ``p_holm``, ``seed_p_holm`` and
    ``established_holm`` (both adjusted p-values under 0.05) added to each."""
    p = holm([t["p_value"] for t in tests])
    seed_p = holm([t.get("seed_p_value") for t in tests])
    return [
        dict(t, p_holm=a, seed_p_holm=b, established_holm=bool(a < ALPHA and b is not None and b < ALPHA))
        for t, a, b in zip(tests, p, seed_p)
    ]


# --- metrics as additive sufficient statistics ---


def corpus_metric(name, lowercase=False, tokenize="13a"):
    """sacreBLEU's metric object: ``bleu`` (with the evaluation's case and tokenizer) or ``chrf``."""
    import sacrebleu

    if name == "bleu":
        return sacrebleu.metrics.BLEU(lowercase=lowercase, tokenize=tokenize)
    if name == "chrf":
        return sacrebleu.metrics.CHRF(lowercase=lowercase)
    raise ValueError(f"no corpus metric {name!r}: bleu or chrf")


def corpus_statistics(hypotheses, references, metric="bleu", lowercase=False, tokenize="13a"):
    """``[sentences, d]``: sacreBLEU's sufficient statistics of each hypothesis under
    :func:`corpus_metric`'s settings (read-only: kept for the next call that asks for them)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    return _scored(metric, lowercase, tokenize, tuple(hypotheses), tuple(references))[0]


# one seed's hypotheses are compared with several students and in several tables (a page of
# results holds the same experiment's tests more than once), and extracting n-grams is most of
# a comparison's time: the statistics of the last lists scored are kept by content and settings
@functools.lru_cache(maxsize=256)
def _scored(metric, lowercase, tokenize, hypotheses, references):
    """``(statistics, signature)`` of ``hypotheses`` (tuples, hashable) scored by a metric of
    these settings, the signature from that metric once it has seen the references."""
    scorer = corpus_metric(metric, lowercase, tokenize)
    extracted = np.array(scorer._extract_corpus_statistics(list(hypotheses), [list(references)]), dtype="float64")
    extracted.flags.writeable = False
    return extracted, str(scorer.get_signature())


def corpus_score(metric):
    """Summed statistics ``[m, d]`` -> ``m`` scores, by sacreBLEU's own arithmetic."""
    return lambda sums: np.array([metric._compute_score_from_stats(list(row)).score for row in sums])


def compare(a, b, references, metric="bleu", lowercase=False, tokenize="13a", resamples=RESAMPLES, seed=SEED):
    """Both tests of corpus BLEU or chrF between hypotheses no matter who made them: ``a`` (the
    baseline) and ``b`` are lists, one per seed, of hypothesis lists of ``references``; seed
    ``i`` of ``a`` is paired with seed ``i`` of ``b``. Returns the dict the module docstring
    shows (``difference`` is ``b`` minus ``a``) plus the metric's ``signature``."""
    if not a or len(a) != len(b):
        raise ValueError(f"compare: {len(a)} seeds of a against {len(b)} of b; give the same number, one or more")
    stats = [np.stack([corpus_statistics(h, references, metric, lowercase, tokenize) for h in side]) for side in (a, b)]
    name = "BLEU" if metric == "bleu" else "chrF"
    scorer = corpus_metric(metric, lowercase, tokenize)
    result = cluster_test(corpus_score(scorer), *stats, metric=name, resamples=resamples, seed=seed)
    result["signature"] = _scored(metric, lowercase, tokenize, tuple(a[0]), tuple(references))[1]
    return result


def accuracy_statistics(predicted, labels):
    """``[examples, 2]``: (correct, 1) per example; its score is :func:`accuracy_score`."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    return np.stack([(predicted == labels).astype("float64"), np.ones(len(labels))], 1)


def accuracy_score(sums):
    return 100 * sums[:, 0] / np.maximum(sums[:, 1], 1)


def f1_statistics(predicted, labels, positive=1):
    """``[examples, 3]``: (true positive, false positive, false negative) per example."""
    predicted, labels = np.asarray(predicted) == positive, np.asarray(labels) == positive
    return np.stack([predicted & labels, predicted & ~labels, ~predicted & labels], 1).astype("float64")


def f1_score(sums):
    tp, fp, fn = sums[:, 0], sums[:, 1], sums[:, 2]
    return 100 * 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def perplexity_score(sums):
    """``exp(sum nll / sum tokens)`` of summed ``(nll, tokens)`` rows."""
    return np.exp(sums[:, 0] / np.maximum(sums[:, 1], 1))


def perplexity(rows):
    """``exp(sum nll / sum tokens)`` over ``(summed nll, tokens)`` rows (blocks or documents)."""
    return float(perplexity_score(np.asarray(rows, dtype="float64").sum(0, keepdims=True))[0])


__all__ = [
    "accuracy_score",
    "accuracy_statistics",
    "cluster_test",
    "compare",
    "corpus_metric",
    "corpus_score",
    "corpus_statistics",
    "f1_score",
    "f1_statistics",
    "holm",
    "perplexity",
    "perplexity_score",
    "resample_counts",
    "seed_level_p",
    "seed_summary",
    "two_sided_p",
    "with_holm",
]
