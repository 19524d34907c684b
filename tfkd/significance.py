"""Is one student better than another, or is it noise? Paired bootstrap resampling over test
examples (Koehn 2004), as sacreBLEU's ``--paired-bs`` does it, and seed summaries.

Every test draws the same resampled index sets for both students (``resamples`` sets of ``n``
indices drawn with replacement, NumPy's ``default_rng(seed)`` as sacreBLEU draws them), scores
both on each set, and reports::

    {"metric": "BLEU", "baseline": 30.09, "candidate": 30.15, "difference": 0.06,
     "ci_low": -0.71, "ci_high": 0.80,    # the 2.5th and 97.5th percentiles of the resampled
                                           # differences (candidate - baseline)
     "p_value": 0.44, "significant": False, "resamples": 1000, "seed": 12345, "examples": 1000}

The p-value is sacreBLEU's (``sacrebleu.significance._compute_p_value``): the share of
resamples whose absolute difference, centred on the mean absolute difference, exceeds the
observed absolute difference, ``(c + 1) / (resamples + 1)`` (1 when the two agree on every
resample); ``significant`` is ``p < 0.05``.
BLEU and chrF are computed by sacreBLEU's own metric objects from their sufficient statistics
(no second BLEU here). With several seeds, seed ``i`` of one student is paired with seed ``i``
of the other and the examples of every pair are pooled: the test asks whether the difference
holds over the seeds' outputs together. Importing this does not import TensorFlow.
"""

import statistics

import numpy as np
import sacrebleu
from sacrebleu.significance import _compute_p_value

SEED = 12345  # sacreBLEU's default SACREBLEU_SEED
RESAMPLES = 1000


def seed_summary(values):
    """``{"mean", "std" (sample standard deviation; 0 for one value), "n", "values"}``."""
    values = [float(v) for v in values]
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "values": values,
    }


def resample_indices(n, resamples=RESAMPLES, seed=SEED):
    """``[resamples, n]`` indices drawn with replacement, as sacreBLEU's paired bootstrap draws them."""
    return np.random.default_rng(seed).choice(n, size=(resamples, n), replace=True)


def paired_result(metric, baseline, candidate, baseline_samples, candidate_samples, seed):
    """The result dict of a paired bootstrap from the two real scores and the two students'
    scores on every resampled index set."""
    baseline_samples, candidate_samples = np.asarray(baseline_samples), np.asarray(candidate_samples)
    differences = candidate_samples - baseline_samples
    absolute = np.abs(differences)
    # two students that agree on every resample differ by nothing: p = 1 (sacreBLEU's count
    # would give its smallest p, 1 / (resamples + 1))
    p = 1.0 if not absolute.any() else _compute_p_value(absolute - absolute.mean(), abs(candidate - baseline))
    low, high = np.percentile(differences, [2.5, 97.5])
    return {
        "metric": metric,
        "baseline": round(float(baseline), 4),
        "candidate": round(float(candidate), 4),
        "difference": round(float(candidate - baseline), 4),
        "ci_low": round(float(low), 4),
        "ci_high": round(float(high), 4),
        "p_value": round(float(p), 4),
        "significant": bool(p < 0.05),
        "resamples": int(len(differences)),
        "seed": seed,
    }


def paired_bootstrap(statistic, baseline, candidate, resamples=RESAMPLES, seed=SEED, metric="score"):
    """Paired bootstrap of a per-example quantity: ``baseline`` and ``candidate`` are arrays
    with one row per example (correct 0/1, ``(prediction, label)`` pairs, ``(nll, tokens)``
    per block, ...), ``statistic(rows)`` the score of a set of rows (mean accuracy, F1,
    perplexity)."""
    baseline, candidate = np.asarray(baseline), np.asarray(candidate)
    if len(baseline) != len(candidate) or not len(baseline):
        raise ValueError(f"paired test: {len(baseline)} baseline and {len(candidate)} candidate examples")
    indices = resample_indices(len(baseline), resamples, seed)
    result = paired_result(
        metric,
        statistic(baseline),
        statistic(candidate),
        [statistic(baseline[i]) for i in indices],
        [statistic(candidate[i]) for i in indices],
        seed,
    )
    result["examples"] = int(len(baseline))
    return result


def corpus_metric(name, lowercase=False, tokenize="13a"):
    """sacreBLEU's metric object: ``bleu`` (with the evaluation's case and tokenizer) or ``chrf``."""
    if name == "bleu":
        return sacrebleu.metrics.BLEU(lowercase=lowercase, tokenize=tokenize)
    if name == "chrf":
        return sacrebleu.metrics.CHRF(lowercase=lowercase)
    raise ValueError(f"no corpus metric {name!r}: bleu or chrf")


def paired_bootstrap_corpus(metric, baseline, candidate, references, resamples=RESAMPLES, seed=SEED):
    """Paired bootstrap of a corpus metric (a sacreBLEU metric object: BLEU, chrF) over
    sentences: ``baseline`` and ``candidate`` are the two students' hypotheses of the same
    ``references``. Scores come from sacreBLEU's sufficient statistics, as its ``--paired-bs``
    computes them (its p-value for the same seed and resamples)."""
    if not len(baseline) == len(candidate) == len(references) or not len(references):
        raise ValueError(
            f"paired test: {len(baseline)} baseline, {len(candidate)} candidate and {len(references)} references"
        )
    stats = [
        np.array(metric._extract_corpus_statistics(h, [references]), dtype="float32") for h in (baseline, candidate)
    ]
    real = [metric._compute_score_from_stats(s.sum(0)).score for s in stats]
    indices = resample_indices(len(references), resamples, seed)
    samples = [[metric._compute_score_from_stats(s[i].sum(0)).score for i in indices] for s in stats]
    result = paired_result(type(metric).__name__.replace("CHRF", "chrF"), *real, *samples, seed)
    result["examples"] = len(references)
    result["signature"] = str(metric.get_signature())
    return result


def perplexity(rows):
    """``exp(sum nll / sum tokens)`` over ``(summed nll, tokens)`` rows (blocks or documents)."""
    return float(np.exp(rows[:, 0].sum() / max(rows[:, 1].sum(), 1)))


__all__ = [
    "corpus_metric",
    "paired_bootstrap",
    "paired_bootstrap_corpus",
    "paired_result",
    "perplexity",
    "resample_indices",
    "seed_summary",
]
