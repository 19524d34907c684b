"""Layers a spec can name. keras-hub's Transformer blocks are the declared defaults
(``transformer_encoder``, ``transformer_decoder``; see :mod:`tfkd.builtins`); AB-Net's adapters
(``bottleneck``, ``cross_attention``) are in :mod:`tfkd.layers.adapters`, imported on access."""

import inspect

from tfkd import registry
from tfkd.lazy import lazy_attributes


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


_LAZY = {
    "BottleneckAdapter": "tfkd.layers.adapters",
    "CrossAttentionAdapter": "tfkd.layers.adapters",
}

__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = ["build_layer", *sorted(_LAZY)]
