"""Layers a spec can name. keras-hub's Transformer blocks are the declared defaults
(``transformer_encoder``, ``transformer_decoder``; see :mod:`tfkd.builtins`)."""

import inspect

from tfkd import registry


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
