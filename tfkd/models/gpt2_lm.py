"""A GPT-2 causal language model: keras-hub's ``GPT2CausalLM`` around a ``GPT2Backbone``."""

import keras
import keras_hub

from tfkd import registry
from tfkd.layers.precision import reverse_projection_in_compute_dtype
from tfkd.models.backbone_config import WrapsBackbone
from tfkd.models.configs import GPT2LMConfig


@registry.register("student", "gpt2_lm")
class GPT2LM(WrapsBackbone, keras.Model):
    """A GPT-2 language model: next-token logits at every position, and cached generation.

    Built either from sizes (a fresh backbone, randomly initialised) or around an existing
    ``backbone`` (a keras-hub ``GPT2Backbone``: a pretrained teacher such as the
    ``gpt2_medium_en`` preset); the config then holds the serialized backbone instead of the
    sizes. The model is keras-hub's ``GPT2CausalLM`` (no preprocessor), so its logits are the
    backbone's output through the reversed token embedding and :meth:`generate_step` is
    keras-hub's key/value-cached sampling loop.

    Args:
        vocabulary_size: size of the byte-level BPE vocabulary (not needed with ``backbone``).
        num_layers, hidden_dim, num_heads, intermediate_dim, dropout, max_sequence_length: the
            sizes of a fresh ``GPT2Backbone``.
        backbone: a ``keras_hub.models.GPT2Backbone`` (or its serialized config) to wrap.

    Call with ``{"token_ids": int [B, T], "padding_mask": bool [B, T]}``; returns logits
    ``[B, T, vocabulary_size]``, position ``t`` predicting token ``t + 1``.

    Example:
    >>> model = tfkd.models.GPT2LM(vocabulary_size=100, num_layers=1, hidden_dim=16,
    ...     num_heads=2, intermediate_dim=32)
    >>> logits = model({"token_ids": ids, "padding_mask": ids != 0})
    """

    config_schema = GPT2LMConfig

    def __init__(
        self,
        vocabulary_size=None,
        num_layers=4,
        hidden_dim=256,
        num_heads=4,
        intermediate_dim=1024,
        dropout=0.1,
        max_sequence_length=1024,
        backbone=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.wraps_backbone = backbone is not None
        backbone = self._backbone(
            keras_hub.models.GPT2Backbone,
            backbone,
            vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            max_sequence_length=max_sequence_length,
        )
        reverse_projection_in_compute_dtype(backbone.token_embedding)  # keras-hub ties the output layer to it
        self.causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None, name="causal_lm")
        self.vocabulary_size = backbone.vocabulary_size
        self.num_layers = backbone.num_layers
        self.hidden_dim = backbone.hidden_dim
        self.num_heads = backbone.num_heads
        self.intermediate_dim = backbone.intermediate_dim
        self.dropout = backbone.dropout
        self.max_sequence_length = backbone.max_sequence_length

    @property
    def backbone(self):
        """The ``GPT2Backbone`` (what pre-training saves and fine-tuning loads)."""
        return self.causal_lm.backbone

    def call(self, inputs, training=False):
        return self.causal_lm(
            {"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]}, training=training
        )

    def generate_step(self, token_ids, padding_mask, sampler, stop_token_ids=None):
        """Fill the positions of ``token_ids`` ``[B, T]`` after each row's prompt (where
        ``padding_mask`` is true) with ``sampler`` (a keras-hub sampler), using keras-hub's
        key/value cache; ``{"token_ids", "padding_mask"}`` (the mask covers the generated
        tokens, up to and including a stop token)."""
        self.causal_lm.sampler = sampler
        return self.causal_lm.generate_step(
            {"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=stop_token_ids
        )

    def get_config(self):
        config = super().get_config()
        if self.wraps_backbone:
            config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
        else:
            config.update(
                {
                    "vocabulary_size": self.vocabulary_size,
                    "num_layers": self.num_layers,
                    "hidden_dim": self.hidden_dim,
                    "num_heads": self.num_heads,
                    "intermediate_dim": self.intermediate_dim,
                    "dropout": self.dropout,
                    "max_sequence_length": self.max_sequence_length,
                }
            )
        return config
