"""Students and teachers. Importing this module registers the built-in students."""

from tfkd.models.lstm import LSTMConfig, LSTMSeq2Seq
from tfkd.models.transformer import TransformerConfig, TransformerSeq2Seq

__all__ = ["LSTMConfig", "LSTMSeq2Seq", "TransformerConfig", "TransformerSeq2Seq"]
