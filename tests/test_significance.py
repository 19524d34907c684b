"""Paired bootstrap tests against a NumPy reference and against sacreBLEU's own paired test;
seed summaries."""

import random

import numpy as np
import pytest
import sacrebleu
from sacrebleu.significance import PairedTest

from tfkd.significance import (
    corpus_metric,
    paired_bootstrap,
    paired_bootstrap_corpus,
    perplexity,
    resample_indices,
    seed_summary,
)


def test_seed_summary_is_mean_and_sample_std():
    summary = seed_summary([30.0, 31.0, 32.5])
    assert summary["mean"] == pytest.approx(31.1666667)
    assert summary["std"] == pytest.approx(np.std([30.0, 31.0, 32.5], ddof=1))
    assert (summary["n"], seed_summary([5])["std"]) == (3, 0.0)


def reference_paired_bootstrap(statistic, a, b, resamples, seed):
    """The test written out with NumPy: the same index sets for both, sacreBLEU's p-value."""
    rng = np.random.default_rng(seed)
    indices = rng.choice(len(a), size=(resamples, len(a)), replace=True)
    sa = np.array([statistic(a[i]) for i in indices])
    sb = np.array([statistic(b[i]) for i in indices])
    observed = abs(statistic(b) - statistic(a))
    absolute = np.abs(sb - sa)
    exceed = np.sum(absolute - absolute.mean() > observed)
    return (exceed + 1) / (resamples + 1), np.percentile(sb - sa, [2.5, 97.5])


def test_the_bootstrap_of_accuracy_equals_the_numpy_reference():
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1])
    baseline = np.stack([np.array([0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1]), labels], 1)
    candidate = np.stack([np.array([0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]), labels], 1)

    def accuracy(rows):
        return 100 * float(np.mean(rows[:, 0] == rows[:, 1]))

    result = paired_bootstrap(accuracy, baseline, candidate, resamples=500, seed=7, metric="accuracy")
    p, (low, high) = reference_paired_bootstrap(accuracy, baseline, candidate, 500, 7)
    assert result["difference"] == pytest.approx(100 * 2 / 12, abs=1e-4)
    assert result["p_value"] == pytest.approx(p, abs=1e-4)
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
    assert result["significant"] == (p < 0.05) and result["examples"] == 12


def test_a_student_against_itself_is_not_significant():
    rows = np.stack([np.arange(20) % 3, np.arange(20) % 2], 1)
    result = paired_bootstrap(lambda r: float(np.mean(r[:, 0] == r[:, 1])), rows, rows)
    assert result["difference"] == 0 and result["p_value"] == 1.0 and not result["significant"]


def test_perplexity_over_blocks():
    blocks = np.array([[10.0, 5.0], [6.0, 3.0]])
    assert perplexity(blocks) == pytest.approx(np.exp(16 / 8))
    assert perplexity(blocks[[0, 0]]) == pytest.approx(np.exp(2.0))


def noisy(references, rate, rng):
    return [" ".join(w if rng.random() > rate else "zz" for w in r.split()) for r in references]


@pytest.mark.parametrize("name", ["bleu", "chrf"])
def test_the_corpus_test_gives_sacrebleus_own_paired_bootstrap_p_value(name, monkeypatch):
    rng = random.Random(3)
    words = "the a dog cat runs sits on mat red blue small big".split()
    references = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(120)]
    baseline, candidate = noisy(references, 0.30, rng), noisy(references, 0.27, rng)
    monkeypatch.setenv("SACREBLEU_SEED", "12345")
    metric = corpus_metric(name)
    _, scores = PairedTest(
        [("baseline", baseline), ("candidate", candidate)],
        {"m": metric},
        [references],
        test_type="bs",
        n_samples=1000,
    )()
    theirs = next(results for key, results in scores.items() if key != "System")[1]
    ours = paired_bootstrap_corpus(corpus_metric(name), baseline, candidate, references, resamples=1000, seed=12345)
    assert 0.001 < theirs.p_value < 0.9  # a case where the p-value says something
    assert ours["p_value"] == pytest.approx(round(theirs.p_value, 4), abs=1e-4)
    assert ours["candidate"] == pytest.approx(theirs.score, abs=1e-3)
    assert ours["ci_low"] < ours["difference"] < ours["ci_high"]
    scored = corpus_metric(name)
    scored.corpus_score(candidate, [references])
    assert ours["signature"] == str(scored.get_signature())


def test_the_same_indices_for_both_students():
    assert np.array_equal(resample_indices(50, 10, 1), np.random.default_rng(1).choice(50, size=(10, 50)))
    assert sacrebleu.metrics.BLEU  # the corpus metric objects are sacreBLEU's
