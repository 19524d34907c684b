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
