"""Students and shared models. The students are declared in :mod:`tfkd.builtins` and imported
when a run looks them up; ``tfkd.models.TransformerSeq2Seq`` and friends import on access."""

_LAZY = {
    "TransformerSeq2Seq": "tfkd.models.transformer",
    "LSTMSeq2Seq": "tfkd.models.lstm",
    "TransformerConfig": "tfkd.models.configs",
    "LSTMConfig": "tfkd.models.configs",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfkd.models' has no attribute {name!r}")


__all__ = sorted(_LAZY)
