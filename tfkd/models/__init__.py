"""Students and teachers. Importing this module registers the built-in students."""

from tfkd.models.transformer import TransformerConfig, TransformerSeq2Seq

__all__ = ["TransformerConfig", "TransformerSeq2Seq"]
