"""Serialization shared by the models that wrap a keras-hub backbone."""

import keras

from tfkd.models.abilities import BackboneStudent


class WrapsBackbone(BackboneStudent):
    """``from_config`` for a model whose config holds either its sizes or, when it wraps an
    existing keras-hub backbone (a pretrained teacher), that backbone serialized."""

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("backbone"), dict):
            config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    def _backbone(self, backbone_class, backbone, vocabulary_size, **sizes):
        """The backbone this model wraps: ``backbone`` as given (deserialized from its config when
        a dict), or a fresh ``backbone_class`` of ``vocabulary_size`` and ``sizes``; a
        ``ValueError`` naming the model when the two disagree or ``backbone`` is another kind."""
        model = type(self).__name__
        if backbone is None:
            if vocabulary_size is None:
                raise ValueError(f"{model} needs vocabulary_size (or an existing backbone)")
            return backbone_class(vocabulary_size=vocabulary_size, **sizes, dtype=self.dtype_policy, name="backbone")
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        if vocabulary_size is not None and vocabulary_size != backbone.vocabulary_size:
            raise ValueError(
                f"{model}: vocabulary_size={vocabulary_size} but the backbone has {backbone.vocabulary_size} tokens"
            )
        if not isinstance(backbone, backbone_class):
            raise ValueError(f"{model} wraps a keras-hub {backbone_class.__name__}, got {type(backbone).__name__}")
        return backbone
