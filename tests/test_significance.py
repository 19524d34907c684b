"""The sentence-cluster bootstrap and the seed-level test against NumPy references and
sacreBLEU's scores; Holm's adjustment against a hand count; and the calibration check: on equal
students the verdict rejects at 0.05 in at most 5% of cases (within Monte-Carlo error), also
when each seed has a quality of its own, where the former pooled test does not; a planted
difference is found."""

import os
import random
import sys

import numpy as np
import pytest
import sacrebleu
from helpers import REPO
from scipy import stats

from tfkd.significance import (
    accuracy_score,
    accuracy_statistics,
    cluster_test,
    compare,
    corpus_statistics,
    f1_score,
    f1_statistics,
    holm,
    perplexity,
    resample_counts,
    seed_level_p,
    seed_summary,
    two_sided_p,
    with_holm,
)

sys.path.insert(0, os.path.join(REPO, "tools"))

import significance_calibration  # noqa: E402


def test_seed_summary_is_mean_and_sample_std():
    summary = seed_summary([30.0, 31.0, 32.5])
    assert summary["mean"] == pytest.approx(31.1666667)
    assert summary["std"] == pytest.approx(np.std([30.0, 31.0, 32.5], ddof=1))
    assert (summary["n"], seed_summary([5])["std"]) == (3, 0.0)


def reference_cluster_test(score_one, a, b, resamples, seed):
    """Written out with loops: resample example indices; a drawn example brings every seed's
    row of both students; the statistic is the mean over seeds of the per-seed difference."""
    rng = np.random.default_rng(seed)
    seeds, n = len(a), len(a[0])
    differences = []
    for i in rng.integers(0, n, (resamples, n)):
        differences.append(np.mean([score_one(b[s][i]) - score_one(a[s][i]) for s in range(seeds)]))
    differences = np.round(differences, 9)
    p = min(1.0, 2 * (min(np.sum(differences <= 0), np.sum(differences >= 0)) + 1) / (resamples + 1))
    per_seed = [score_one(b[s]) - score_one(a[s]) for s in range(seeds)]
    return p, np.percentile(differences, [2.5, 97.5]), per_seed


def test_the_cluster_bootstrap_of_accuracy_equals_the_numpy_reference():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    a = [np.where(rng.random(40) < 0.7, labels, 1 - labels) for _ in range(3)]
    b = [np.where(rng.random(40) < 0.8, labels, 1 - labels) for _ in range(3)]
    result = cluster_test(
        accuracy_score,
        np.stack([accuracy_statistics(x, labels) for x in a]),
        np.stack([accuracy_statistics(x, labels) for x in b]),
        resamples=300,
        seed=7,
    )

    def score_one(rows):  # (predicted, label) rows
        return 100 * np.mean(rows[:, 0] == rows[:, 1])

    p, (low, high), per_seed = reference_cluster_test(
        score_one, [np.stack([x, labels], 1) for x in a], [np.stack([x, labels], 1) for x in b], 300, 7
    )
    assert result["p_value"] == pytest.approx(p, abs=1e-4)
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
    assert result["seed_differences"] == pytest.approx(per_seed, abs=1e-4)
    assert result["difference"] == pytest.approx(np.mean(per_seed), abs=1e-4)
    assert result["seed_p_value"] == pytest.approx(stats.ttest_1samp(per_seed, 0).pvalue, abs=1e-4)
    assert (result["seeds"], result["examples"]) == (3, 40)


def test_counts_are_draws_with_replacement():
    counts = resample_counts(30, 50, seed=3)
    assert counts.shape == (50, 30) and (counts.sum(1) == 30).all()
    indices = np.random.default_rng(3).integers(0, 30, (50, 30))
    assert (counts[4] == np.bincount(indices[4], minlength=30)).all()


def test_f1_and_perplexity_from_statistics():
    predicted, labels = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    tp, fp, fn = 2, 1, 1
    assert f1_score(f1_statistics(predicted, labels).sum(0, keepdims=True))[0] == pytest.approx(
        100 * 2 * tp / (2 * tp + fp + fn)
    )
    assert perplexity(np.array([[10.0, 5.0], [6.0, 3.0]])) == pytest.approx(np.exp(16 / 8))


@pytest.mark.parametrize("metric", ["bleu", "chrf"])
def test_compare_scores_each_seed_as_sacrebleu_does(metric):
    rng = random.Random(3)
    words = "the a dog cat runs sits on mat red blue small big".split()
    references = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(80)]

    def noisy(rate):
        return [" ".join(w if rng.random() > rate else "zz" for w in r.split()) for r in references]

    a, b = [noisy(0.3) for _ in range(3)], [noisy(0.15) for _ in range(3)]
    result = compare(a, b, references, metric=metric, resamples=200)
    score = sacrebleu.corpus_bleu if metric == "bleu" else sacrebleu.corpus_chrf
    per_seed = [score(y, [references]).score - score(x, [references]).score for x, y in zip(a, b)]
    assert result["seed_differences"] == pytest.approx(per_seed, abs=1e-3)
    assert result["baseline"] == pytest.approx(np.mean([score(x, [references]).score for x in a]), abs=1e-3)
    assert result["ci_low"] < result["difference"] < result["ci_high"]
    assert result["established"] == (result["p_value"] < 0.05 and result["seed_p_value"] < 0.05)
    assert result["signature"].startswith("nrefs:1")


def test_statistics_scored_once_are_reused_only_under_the_same_settings():
    references = ["The cat sat .", "A dog runs ."] * 5
    hypotheses = ["the cat sat .", "a dog ran ."] * 5
    cased = corpus_statistics(hypotheses, references)
    again = corpus_statistics(list(hypotheses), references)
    assert again is cased  # the same settings get the statistics kept
    lowercased = corpus_statistics(hypotheses, references, lowercase=True)
    assert lowercased[:, 2].sum() > cased[:, 2].sum()  # lowercased, more unigrams match (column 2)
    assert not np.array_equal(corpus_statistics(hypotheses, references, "chrf")[:, :2], cased[:, :2])
    # a comparison whose statistics all come from the store still signs its metric as sacreBLEU does
    result = compare([hypotheses], [hypotheses], references, resamples=50)
    scored = sacrebleu.metrics.BLEU()
    scored.corpus_score(hypotheses, [references])
    assert result["signature"] == str(scored.get_signature())


def test_one_seed_is_tested_but_never_established():
    references = ["a b c d", "e f g h", "a c e g"] * 10
    better = compare([["x"] * 30], [references], references, resamples=200)
    assert better["p_value"] < 0.05 and better["significant"]
    assert better["seed_p_value"] is None and not better["established"]


def test_a_student_against_itself_is_not_significant():
    references = ["a b c d", "e f g h"] * 5
    same = compare([references[:1] + ["x y"] * 9] * 3, [references[:1] + ["x y"] * 9] * 3, references)
    assert same["difference"] == 0 and same["p_value"] == 1.0 and same["seed_p_value"] == 1.0


def test_the_seed_level_test_needs_three_seeds():
    assert seed_level_p([1.0, 2.0]) is None
    assert seed_level_p([0.5, 0.7, 0.6]) == pytest.approx(stats.ttest_1samp([0.5, 0.7, 0.6], 0).pvalue)
    assert seed_level_p([0.5, 0.7, 0.6]) < 0.05  # three consistent seeds can establish a gain
    assert seed_level_p([0.5, 0.5, 0.5]) == 0.0 and seed_level_p([0, 0, 0]) == 1.0


def test_the_p_value_agrees_with_the_interval():
    rng = np.random.default_rng(1)
    for shift in np.linspace(-0.4, 0.4, 41):
        differences = rng.normal(shift, 0.1, 999)
        low, high = np.percentile(differences, [2.5, 97.5])
        if low > 0.005 or high < -0.005:  # clearly outside (an interval that touches 0 may go either way)
            assert two_sided_p(differences) < 0.05
        elif low < -0.005 and high > 0.005:
            assert two_sided_p(differences) >= 0.05


def test_holm_against_a_hand_count():
    # sorted 0.01, 0.02, 0.03, 0.2 times 4, 3, 2, 1 -> 0.04, 0.06, 0.06 (monotone), 0.2
    assert holm([0.03, 0.2, 0.01, None, 0.02]) == [0.06, 0.2, 0.04, None, 0.06]
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    tests = with_holm(
        [{"p_value": 0.01, "seed_p_value": 0.01}, {"p_value": 0.03, "seed_p_value": 0.04}, {"p_value": 0.5}]
    )
    assert [t["established_holm"] for t in tests] == [True, False, False]
    assert tests[2]["seed_p_holm"] is None


TRIALS = 300
# the rejection rate of a calibrated test is 5% give or take Monte-Carlo error: 3 standard errors
BOUND = 0.05 + 3 * np.sqrt(0.05 * 0.95 / TRIALS)


def test_the_verdict_is_calibrated_on_equal_students_where_pooling_is_not():
    plain = significance_calibration.rejection_rates(TRIALS, resamples=400, seed=1)
    assert plain["cluster"] <= BOUND and plain["established"] <= BOUND
    assert plain["pooled"] > BOUND  # the former test: about twice the promised rate
    shifted = significance_calibration.rejection_rates(TRIALS, seed_sd=0.1, resamples=400, seed=2)
    assert shifted["seed t"] <= BOUND and shifted["established"] <= BOUND
    assert shifted["pooled"] > 4 * 0.05  # pooled seeds take seed luck for a difference


def test_a_planted_difference_is_found():
    found = significance_calibration.rejection_rates(100, effect=0.5, seed_sd=0.1, resamples=400, seed=3)
    assert found["cluster"] >= 0.95 and found["established"] >= 0.6
    assert significance_calibration.t_power(3, 3) == pytest.approx(found["established"], abs=0.15)
