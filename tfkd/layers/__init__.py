"""Layers a spec can name: keras-hub's Transformer blocks, the defaults (``transformer_encoder``,
``transformer_decoder``, registered in :mod:`tfkd.layers.blocks`), and AB-Net's adapters
(``bottleneck``, ``cross_attention``, in :mod:`tfkd.layers.adapters`), imported when a run first
looks them up (:mod:`tfkd.builtins`). Their constructors' arguments are registered here, so a
spec naming them validates without importing TensorFlow (tests compare them with the
constructors)."""

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


_BLOCK_ARGUMENTS = (
    "intermediate_dim",
    "num_heads",
    "dropout",
    "activation",
    "layer_norm_epsilon",
    "kernel_initializer",
    "bias_initializer",
    "normalize_first",
)
registry.register(
    "encoder_layer", "transformer_encoder", arguments=_BLOCK_ARGUMENTS, required=("intermediate_dim", "num_heads")
)
registry.register(
    "decoder_layer", "transformer_decoder", arguments=_BLOCK_ARGUMENTS, required=("intermediate_dim", "num_heads")
)
registry.register(
    "adapter",
    "bottleneck",
    arguments=("adapter_dim", "layer_norm_epsilon", "kernel_initializer"),
    required=("adapter_dim",),
)
registry.register(
    "adapter",
    "cross_attention",
    arguments=(
        "num_heads",
        "key_dim",
        "dropout",
        "intermediate_dim",
        "attention_dropout",
        "layer_norm_epsilon",
        "kernel_initializer",
    ),
    required=("num_heads",),
)

_LAZY = {
    "BottleneckAdapter": "tfkd.layers.adapters",
    "CrossAttentionAdapter": "tfkd.layers.adapters",
}

__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = ["build_layer", *sorted(_LAZY)]
