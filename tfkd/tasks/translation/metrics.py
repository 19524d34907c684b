"""Scoring with sacreBLEU on detokenized text."""

import sacrebleu


def corpus_bleu(hypotheses, references, lowercase=False, tokenize="13a"):
    """sacreBLEU corpus BLEU; returns ``(score, signature)``."""
    metric = sacrebleu.metrics.BLEU(lowercase=lowercase, tokenize=tokenize)
    result = metric.corpus_score(hypotheses, [references])
    return result, str(metric.get_signature())


def corpus_chrf(hypotheses, references, lowercase=False):
    """sacreBLEU corpus chrF; returns ``(score, signature)``."""
    metric = sacrebleu.metrics.CHRF(lowercase=lowercase)
    result = metric.corpus_score(hypotheses, [references])
    return result, str(metric.get_signature())


def read_hypotheses(folder, split="test"):
    """The ``<split>.hyp`` an evaluate stage wrote in ``folder``, a line a sentence."""
    with open(f"{folder}/{split}.hyp", encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def paired_bleu_chrf(references, baseline_folders, candidate_folders, split, lowercase=False, tokenize="13a"):
    """``{"BLEU": result, "chrF": result}``: paired bootstrap tests of BLEU and chrF (see
    :mod:`tfkd.significance`) between the hypotheses two students' evaluate stages wrote,
    seed ``i``'s folder of one paired with seed ``i``'s of the other, every pair's sentences
    pooled."""
    from tfkd.significance import corpus_metric, paired_bootstrap_corpus

    baseline, candidate, pooled_references = [], [], []
    for b, c in zip(baseline_folders, candidate_folders, strict=True):
        hypotheses = read_hypotheses(b, split), read_hypotheses(c, split)
        if not len(hypotheses[0]) == len(hypotheses[1]) == len(references):
            raise ValueError(
                f"{b} and {c}: {len(hypotheses[0])} and {len(hypotheses[1])} {split} hypotheses for "
                f"{len(references)} references"
            )
        baseline += hypotheses[0]
        candidate += hypotheses[1]
        pooled_references += references
    results = {}
    for name, label in (("bleu", "BLEU"), ("chrf", "chrF")):
        metric = corpus_metric(name, lowercase, tokenize)
        results[label] = paired_bootstrap_corpus(metric, baseline, candidate, pooled_references)
        results[label]["seeds"] = len(baseline_folders)
    return results
