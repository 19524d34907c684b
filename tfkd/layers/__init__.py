"""Layers a spec can name. keras-hub's Transformer blocks are registered as the defaults."""

import inspect

import keras_hub

from tfkd import registry

registry.register("encoder_layer", "transformer_encoder")(keras_hub.layers.TransformerEncoder)
registry.register("decoder_layer", "transformer_decoder")(keras_hub.layers.TransformerDecoder)

def build_layer(kind, ref, defaults, name):
    """Build the ``kind`` layer named by ``ref`` (``{"kind": ..., **kwargs}``).

    ``defaults`` (the student's width, heads, dropout...) fill in only the constructor
    arguments the layer declares and the spec did not set.
    """
    ref = dict(ref)
    layer_cls = registry.lookup(kind, ref.pop("kind"))

    params = inspect.signature(layer_cls.__init__).parameters
    kwargs = {k: v for k, v in defaults.items() if k in params and k not in ref}
    kwargs.update(ref)
    return layer_cls(name=name, **kwargs)

__all__ = ["build_layer"]
