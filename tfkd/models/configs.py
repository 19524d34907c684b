"""Spec schemas of the built-in students (pydantic only: specs validate without TensorFlow),
registered here by student name (each student's class registers itself in its own module, which
is imported when a run first looks it up: :mod:`tfkd.builtins`)."""

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator

from tfkd import registry
from tfkd.spec import LayerRef, Strict, validate_layer_ref


class TransformerDecoderConfig(Strict):
    """The autoregressive Transformer decoder's settings (the Transformer's and AB-Net-Enc's)."""

    decoder_layers: PositiveInt = 3
    hidden_dim: PositiveInt = 256
    intermediate_dim: PositiveInt = 1024
    num_heads: PositiveInt = 4
    dropout: float = Field(0.1, ge=0, lt=1)
    max_length: PositiveInt = 256
    tie_embeddings: bool = True
    decoder_layer: LayerRef = LayerRef(kind="transformer_decoder")

    # what the builder passes to every encoder/decoder layer that declares the argument
    layer_arguments: ClassVar[tuple] = ("hidden_dim", "intermediate_dim", "num_heads", "dropout", "normalize_first")


class TransformerConfig(TransformerDecoderConfig):
    encoder_layers: PositiveInt = 3
    share_embeddings: bool = False
    encoder_layer: LayerRef = LayerRef(kind="transformer_encoder")


class LSTMConfig(Strict):
    encoder_layers: PositiveInt = 2
    decoder_layers: PositiveInt = 2
    hidden_dim: PositiveInt = 256
    embedding_dim: PositiveInt = 256
    dropout: float = Field(0.2, ge=0, lt=1)


# ----------------------------------------------------------------------------- AB-Net

# what the AB-Net students pass to an adapter whose constructor declares the argument
ENCODER_ADAPTER_ARGUMENTS = ("hidden_dim", "adapter_dim", "dropout")
DECODER_ADAPTER_ARGUMENTS = ("hidden_dim", "num_heads", "dropout")


class AdapterSettings(Strict):
    """``student.adapters`` of the AB-Net students: which BERT parameters train and the
    adapters inserted after the BERT layers."""

    # adapters: frozen BERTs, only adapters (+ [LENGTH], length classifier, output head) train;
    # all: the paper's full fine-tuning ablation (AB-Net FB)
    train: Literal["adapters", "all"] = "adapters"
    encoder_layers: Literal["all"] | PositiveInt = "all"  # adapters after the top N source-BERT layers
    decoder_layers: Literal["all"] | PositiveInt = "all"  # cross-attention after the top N target-BERT layers
    encoder_dim: PositiveInt = 512  # d_Aenc, the bottleneck width
    decoder_heads: PositiveInt | None = None  # default: the target BERT's num_heads
    dropout: float = Field(0.1, ge=0, lt=1)
    encoder_adapter: LayerRef = LayerRef(kind="bottleneck")
    decoder_adapter: LayerRef = LayerRef(kind="cross_attention")

    @property
    def frozen(self):
        """Whether the BERT weights stay as the checkpoints have them (``train`` is not ``all``)."""
        return self.train != "all"

    @field_validator("encoder_adapter", "decoder_adapter")
    @classmethod
    def _registered_adapter(cls, ref, info):
        supplied = ENCODER_ADAPTER_ARGUMENTS if info.field_name == "encoder_adapter" else DECODER_ADAPTER_ARGUMENTS
        validate_layer_ref("adapter", ref, supplied)
        return ref


class ABNetConfig(Strict):
    """``student.kind: abnet``: AB-Net, a frozen source BERT (encoder) and a frozen target BERT
    (bidirectional decoder, Mask-Predict) joined by adapters."""

    source_bert: str  # keras-hub preset, local folder, package:module/subdir, hf://...
    target_bert: str
    adapters: AdapterSettings = Field(default_factory=AdapterSettings)
    max_target_length: PositiveInt = 128  # the [LENGTH] classifier predicts 0..max_target_length


class ABNetEncConfig(TransformerDecoderConfig):
    """``student.kind: abnet_enc``: AB-Net-Enc, a frozen source BERT with encoder adapters and
    an autoregressive Transformer decoder trained from scratch."""

    source_bert: str
    adapters: AdapterSettings = Field(default_factory=AdapterSettings)

    @field_validator("adapters")
    @classmethod
    def _no_decoder_adapters(cls, adapters):
        defaults = AdapterSettings()  # (not model_fields_set: a dumped config validates again)
        unused = [
            key
            for key in ("decoder_layers", "decoder_heads", "decoder_adapter")
            if getattr(adapters, key) != getattr(defaults, key)
        ]
        if unused:
            raise ValueError(
                f"{', '.join(unused)} do not apply to abnet_enc (its decoder is a Transformer "
                f"decoder: set student.decoder_layers, num_heads, decoder_layer)"
            )
        return adapters


class ABNetEncParallelConfig(ABNetEncConfig):
    """``student.kind: abnet_enc_parallel``: AB-Net-Enc decoded in parallel (abnet.txt Table 1):
    the frozen source BERT with encoder adapters (its ``[CLS]`` read as ``[LENGTH]``) and a
    bidirectional Transformer decoder trained from scratch, decoded by Mask-Predict."""

    max_target_length: PositiveInt = 128  # the [LENGTH] classifier predicts 0..max_target_length


class CMLMTransformerConfig(TransformerConfig):
    """``student.kind: cmlm_transformer``: the CMLM Transformer of Mask-Predict (Ghazvininejad
    et al. 2019): a Transformer whose encoder reads ``[LENGTH] x`` and whose decoder attends
    both ways, decoded by Mask-Predict."""

    max_target_length: PositiveInt = 128  # the [LENGTH] classifier predicts 0..max_target_length


# ----------------------------------------------------------------------------- classifiers


class BertClassifierConfig(Strict):
    """``student.kind: bert_classifier``: a BERT encoder (keras-hub ``BertBackbone``) with a
    classification head on its pooled ``[CLS]`` output."""

    num_layers: PositiveInt = 3
    hidden_dim: PositiveInt = 256
    num_heads: PositiveInt = 4
    intermediate_dim: PositiveInt = 1024
    dropout: float = Field(0.1, ge=0, lt=1)
    max_sequence_length: PositiveInt = 512  # longest input (position embeddings), [CLS] and [SEP] included


class GPT2LMConfig(Strict):
    """``student.kind: gpt2_lm``: a GPT-2 causal language model (keras-hub ``GPT2Backbone``,
    output projection tied to the token embedding)."""

    num_layers: PositiveInt = 4
    hidden_dim: PositiveInt = 256
    num_heads: PositiveInt = 4
    intermediate_dim: PositiveInt = 1024
    dropout: float = Field(0.1, ge=0, lt=1)
    max_sequence_length: PositiveInt = 1024  # longest input (position embeddings)


for _name, _schema in (
    ("transformer", TransformerConfig),
    ("lstm", LSTMConfig),
    ("abnet", ABNetConfig),
    ("abnet_enc", ABNetEncConfig),
    ("abnet_enc_parallel", ABNetEncParallelConfig),
    ("cmlm_transformer", CMLMTransformerConfig),
    ("bert_classifier", BertClassifierConfig),
    ("gpt2_lm", GPT2LMConfig),
):
    registry.register("student", _name, schema=_schema)
