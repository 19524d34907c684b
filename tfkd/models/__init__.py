"""Students and shared models. Each student registers itself in its module, which is imported
when a run looks it up (:mod:`tfkd.builtins`; its schema is registered in
:mod:`tfkd.models.configs`); ``tfkd.models.TransformerSeq2Seq`` and friends import on access."""

from tfkd.lazy import lazy_attributes

_LAZY = {
    "TransformerSeq2Seq": "tfkd.models.transformer",
    "LSTMSeq2Seq": "tfkd.models.lstm",
    "TransformerConfig": "tfkd.models.configs",
    "LSTMConfig": "tfkd.models.configs",
    "ABNet": "tfkd.models.abnet",
    "ABNetEnc": "tfkd.models.abnet",
    "ABNetEncParallel": "tfkd.models.abnet",
    "CMLMTransformer": "tfkd.models.cmlm_transformer",
    "ABNetEncParallelConfig": "tfkd.models.configs",
    "CMLMTransformerConfig": "tfkd.models.configs",
    "save_adapters": "tfkd.models.adapter_weights",
    "load_adapters": "tfkd.models.adapter_weights",
    "ABNetConfig": "tfkd.models.configs",
    "ABNetEncConfig": "tfkd.models.configs",
    "AdapterSettings": "tfkd.models.configs",
    "BertClassifier": "tfkd.models.bert_classifier",
    "BertClassifierConfig": "tfkd.models.configs",
    "GPT2LM": "tfkd.models.gpt2_lm",
    "GPT2LMConfig": "tfkd.models.configs",
}


__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
