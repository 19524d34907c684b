"""Scoring with sacreBLEU on detokenized text."""

import sacrebleu


def corpus_bleu(hypotheses, references, lowercase=False, tokenize="13a"):
    """sacreBLEU corpus BLEU; returns ``(score, signature)``."""
    metric = sacrebleu.metrics.BLEU(lowercase=lowercase, tokenize=tokenize)
    result = metric.corpus_score(hypotheses, [references])
    return result, str(metric.get_signature())
