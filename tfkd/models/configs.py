"""Spec schemas of the built-in students (pydantic only: specs validate without TensorFlow)."""

from typing import ClassVar

from pydantic import Field, PositiveInt

from tfkd.spec import LayerRef, Strict


class TransformerConfig(Strict):
    encoder_layers: PositiveInt = 3
    decoder_layers: PositiveInt = 3
    hidden_dim: PositiveInt = 256
    intermediate_dim: PositiveInt = 1024
    num_heads: PositiveInt = 4
    dropout: float = Field(0.1, ge=0, lt=1)
    max_length: PositiveInt = 256
    tie_embeddings: bool = True
    share_embeddings: bool = False
    encoder_layer: LayerRef = LayerRef(kind="transformer_encoder")
    decoder_layer: LayerRef = LayerRef(kind="transformer_decoder")

    # what the builder passes to every encoder/decoder layer that declares the argument
    layer_arguments: ClassVar[tuple] = ("hidden_dim", "intermediate_dim", "num_heads", "dropout",
                                        "normalize_first")


class LSTMConfig(Strict):
    encoder_layers: PositiveInt = 2
    decoder_layers: PositiveInt = 2
    hidden_dim: PositiveInt = 256
    embedding_dim: PositiveInt = 256
    dropout: float = Field(0.2, ge=0, lt=1)
