"""A BERT sentence classifier: a keras-hub ``BertBackbone`` and a head on its pooled output."""

import keras
import keras_hub
from keras import ops

from tfkd import registry
from tfkd.models.backbone_config import WrapsBackbone
from tfkd.models.configs import BertClassifierConfig


@registry.register("student", "bert_classifier")
class BertClassifier(WrapsBackbone, keras.Model):
    """A BERT encoder with a classification head, as keras-hub's ``BertTextClassifier`` builds
    it: pooled ``[CLS]`` output -> dropout -> dense logits.

    Built either from sizes (a fresh backbone, randomly initialised: a student) or around an
    existing ``backbone`` (a pretrained BERT: a teacher to fine-tune); the config then holds
    the serialized backbone instead of the sizes.

    Args:
        vocabulary_size: size of the WordPiece vocabulary (not needed with ``backbone``).
        num_classes: number of labels.
        num_layers: Transformer layers of a fresh backbone.
        hidden_dim: model width of a fresh backbone.
        num_heads: attention heads of a fresh backbone.
        intermediate_dim: feed-forward width of a fresh backbone.
        dropout: dropout rate of the head (and of a fresh backbone).
        max_sequence_length: longest input of a fresh backbone ([CLS] and [SEP] included).
        backbone: a ``keras_hub.models.BertBackbone`` (or its serialized config) to wrap
            instead of building one from the sizes.

    Call with ``{"token_ids": int [B, L], "padding_mask": bool [B, L]}`` (one segment: the
    segment ids are zeros); returns logits ``[B, num_classes]``.

    Example:
    >>> model = tfkd.models.BertClassifier(vocabulary_size=100, num_classes=2, num_layers=1,
    ...     hidden_dim=16, num_heads=2, intermediate_dim=32)
    >>> logits = model({"token_ids": ids, "padding_mask": ids != 0})
    """

    # the spec schema the registry keeps reading once the class is imported
    config_schema = BertClassifierConfig

    def __init__(
        self,
        vocabulary_size=None,
        num_classes=2,
        num_layers=3,
        hidden_dim=256,
        num_heads=4,
        intermediate_dim=1024,
        dropout=0.1,
        max_sequence_length=512,
        backbone=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.wraps_backbone = backbone is not None
        backbone = self._backbone(
            keras_hub.models.BertBackbone,
            backbone,
            vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            max_sequence_length=max_sequence_length,
        )
        self.backbone = backbone
        self.vocabulary_size = backbone.vocabulary_size
        self.num_layers = backbone.num_layers
        self.hidden_dim = backbone.hidden_dim
        self.num_heads = backbone.num_heads
        self.intermediate_dim = backbone.intermediate_dim
        self.max_sequence_length = backbone.max_sequence_length
        self.num_classes = num_classes
        self.dropout = dropout
        self.output_dropout = keras.layers.Dropout(dropout, dtype=backbone.dtype_policy, name="classifier_dropout")
        self.output_dense = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=backbone.dtype_policy,
            name="logits",
        )

    def call(self, inputs, training=False):
        token_ids = inputs["token_ids"]
        outputs = self.backbone(
            {"token_ids": token_ids, "segment_ids": ops.zeros_like(token_ids), "padding_mask": inputs["padding_mask"]},
            training=training,
        )
        pooled = self.output_dropout(outputs["pooled_output"], training=training)
        return self.output_dense(pooled)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "dropout": self.dropout})
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
                    "max_sequence_length": self.max_sequence_length,
                }
            )
        return config
