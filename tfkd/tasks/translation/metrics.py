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
    """``{"BLEU": result, "chrF": result}``: both tests of :func:`tfkd.significance.compare`
    between the hypotheses two students' evaluate stages wrote, seed ``i``'s folder of one
    paired with seed ``i``'s of the other, sentences resampled as clusters of their seeds."""
    from tfkd.significance import compare

    sides = [], []
    for b, c in zip(baseline_folders, candidate_folders, strict=True):
        for side, folder in zip(sides, (b, c)):
            hypotheses = read_hypotheses(folder, split)
            if len(hypotheses) != len(references):
                raise ValueError(f"{folder}: {len(hypotheses)} {split} hypotheses for {len(references)} references")
            side.append(hypotheses)
    return {
        label: compare(*sides, references, metric=name, lowercase=lowercase, tokenize=tokenize)
        for name, label in (("bleu", "BLEU"), ("chrf", "chrF"))
    }
