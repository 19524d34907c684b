"""Accuracy and F1 of predicted label ids (NumPy)."""

import numpy as np


def accuracy(predicted, labels):
    """Fraction of the labelled examples (``labels >= 0``) predicted right; ``None`` without any."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    scored = labels >= 0
    if not scored.any():
        return None
    return float((predicted[scored] == labels[scored]).mean())


def f1(predicted, labels, positive=1):
    """F1 of label id ``positive`` over the labelled examples: ``2 TP / (2 TP + FP + FN)``
    (0 when there is neither a positive prediction nor a positive label)."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    scored = labels >= 0
    predicted, labels = predicted[scored] == positive, labels[scored] == positive
    true_positives = int((predicted & labels).sum())
    denominator = 2 * true_positives + int((predicted & ~labels).sum()) + int((~predicted & labels).sum())
    return 2 * true_positives / denominator if denominator else 0.0
