"""Which way a score is better: lower for losses and perplexity, higher for anything else
(BLEU, chrF, accuracy, F1). Checkpoint keeping, early stopping and a sweep's selection read it.
Imports nothing."""

LOWER_IS_BETTER = ("loss", "nll", "xe", "perplexity")


def lower_is_better(metric):
    """Whether a lower ``metric`` (a name such as ``val_loss``, ``BLEU``, ``perplexity``) is better."""
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


__all__ = ["LOWER_IS_BETTER", "lower_is_better"]
