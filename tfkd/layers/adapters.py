"""Adapter layers (AB-Net, Guo et al. 2020): small trainable modules inserted after the
layers of a frozen BERT.

- :class:`BottleneckAdapter` (``bottleneck``), eq. 4: ``H + W2 · ReLU(W1 · LN(H))``, after each
  source-BERT layer.
- :class:`CrossAttentionAdapter` (``cross_attention``), eq. 6: ``LN(x + Dropout(MHA(x, E, E)))``,
  after each target-BERT layer: the decoder's states attend to the encoder's output; with
  ``intermediate_dim``, a feed-forward sublayer after it, ``LN(y + Dropout(W2 ReLU(W1 y)))``, as
  the authors' released decoder layer has (``BertAdapterDecoderLayer``: ``encoder_attn`` then
  ``encoder_attn_fc1``/``fc2``, post-LN).

A spec names them (or a user's own ``@tfkd.register("adapter", NAME)`` layer) under
``student.adapters.encoder_adapter`` / ``decoder_adapter``; the student builds them with
:func:`tfkd.layers.build_layer`, filling in ``hidden_dim``, ``adapter_dim``, ``num_heads`` and
``dropout`` where the constructor declares them.
"""

import keras
from keras import ops

from tfkd import registry


def _initializer(initializer):
    """``initializer`` (None: BERT's truncated normal, stddev 0.02) as a Keras initializer."""
    if initializer is None:
        return keras.initializers.TruncatedNormal(stddev=0.02)
    return keras.initializers.get(initializer)


def _clone(initializer):
    """A fresh copy, so two weights drawn from one unseeded initializer differ."""
    return initializer.__class__.from_config(initializer.get_config())


def _built_projections(layer, inputs_shape, inner_dim, names, activation=None):
    """``W1`` (``hidden -> inner_dim``, with ``activation``) and ``W2`` (back to the hidden
    width) of ``layer``, built, each kernel drawn from a fresh copy of its initializer."""
    inner, outer = (
        keras.layers.Dense(
            units,
            activation=act,
            kernel_initializer=_clone(layer.kernel_initializer),
            dtype=layer.dtype_policy,
            name=name,
        )
        for units, act, name in ((inner_dim, activation, names[0]), (inputs_shape[-1], None, names[1]))
    )
    inner.build(inputs_shape)
    outer.build(tuple(inputs_shape[:-1]) + (inner_dim,))
    return inner, outer


@registry.register("adapter", "bottleneck")
class BottleneckAdapter(keras.layers.Layer):
    """The encoder adapter of AB-Net (eq. 4): ``Z = W1 · LN(H)``, ``out = H + W2 · ReLU(Z)``.

    Both projections start from a small normal (BERT's truncated normal, stddev 0.02), so the
    adapter starts close to the identity and every weight gets a gradient from the first step.

    Args:
        adapter_dim: width of the bottleneck ``Z`` (the paper's ``d_Aenc``).
        layer_norm_epsilon: epsilon of the input layer normalization.
        kernel_initializer: initializer of ``W1`` and ``W2`` (default: truncated normal,
            stddev 0.02). Biases start at zero.

    Call arguments:
        inputs: hidden states ``[B, T, H]``.
        training: unused (no dropout), for the adapter contract.

    Returns ``[B, T, H]``.
    """

    def __init__(self, adapter_dim, layer_norm_epsilon=1e-12, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.adapter_dim = adapter_dim
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = _initializer(kernel_initializer)

    def build(self, inputs_shape):
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
        )
        self.layer_norm.build(inputs_shape)
        self.down_projection, self.up_projection = _built_projections(
            self, inputs_shape, self.adapter_dim, ("down_projection", "up_projection")
        )
        self.built = True

    def call(self, inputs, training=None):
        z = self.down_projection(self.layer_norm(inputs))
        return inputs + self.up_projection(ops.relu(z))

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "adapter_dim": self.adapter_dim,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@registry.register("adapter", "cross_attention")
class CrossAttentionAdapter(keras.layers.Layer):
    """The decoder adapter of AB-Net (eq. 6): multi-head attention from the decoder's states
    (query) to the encoder's output (key and value), then residual and LayerNorm after, as in
    BERT's post-LN blocks: ``y = LN(x + Dropout(MHA(x, enc, enc)))``; with ``intermediate_dim``,
    then a feed-forward sublayer, ``out = LN(y + Dropout(W2 · ReLU(W1 · y)))`` (the released
    code's; the paper's eq. 6 shows the attention alone, which is ``out = y``).

    Args:
        num_heads: attention heads.
        key_dim: width of each head (default: ``hidden_dim // num_heads`` of the query).
        dropout: dropout on the attention output and the feed-forward output.
        intermediate_dim: width of the feed-forward sublayer's hidden layer (``None``: no
            sublayer, eq. 6 as written).
        attention_dropout: dropout on the attention probabilities (``None``: ``dropout``; the
            released recipe uses 0).
        layer_norm_epsilon: epsilon of the output layer normalizations.
        kernel_initializer: initializer of the attention and feed-forward projections
            (default: truncated normal, stddev 0.02).

    Call arguments:
        inputs: decoder states ``[B, Tq, H]``.
        encoder_sequence: encoder output ``[B, Tk, He]`` (``He`` may differ from ``H``).
        encoder_padding_mask: ``[B, Tk]``, true (or 1) at real encoder positions.
        decoder_padding_mask: ``[B, Tq]``, true at real decoder positions; a padded query
            position attends to nothing real (its output is not meaningful).
        training: enables dropout.

    Returns ``[B, Tq, H]``.
    """

    def __init__(
        self,
        num_heads,
        key_dim=None,
        dropout=0.1,
        intermediate_dim=None,
        attention_dropout=None,
        layer_norm_epsilon=1e-12,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.dropout = dropout
        self.intermediate_dim = intermediate_dim
        self.attention_dropout = attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = _initializer(kernel_initializer)

    def build(self, inputs_shape, encoder_sequence_shape=None):
        hidden_dim = inputs_shape[-1]
        if encoder_sequence_shape is None:
            encoder_sequence_shape = inputs_shape
        key_dim = self.key_dim or hidden_dim // self.num_heads
        if not self.key_dim and hidden_dim % self.num_heads:
            raise ValueError(
                f"CrossAttentionAdapter: hidden size {hidden_dim} is not divisible by "
                f"num_heads={self.num_heads}; set key_dim"
            )
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=key_dim,
            dropout=self.dropout if self.attention_dropout is None else self.attention_dropout,
            kernel_initializer=_clone(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="attention",
        )
        self.attention.build(inputs_shape, encoder_sequence_shape, encoder_sequence_shape)
        self.output_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="output_dropout")
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
        )
        self.layer_norm.build(inputs_shape)
        if self.intermediate_dim:
            self._build_feed_forward(inputs_shape)
        self.built = True

    def _build_feed_forward(self, inputs_shape):
        self.feed_forward_in, self.feed_forward_out = _built_projections(
            self, inputs_shape, self.intermediate_dim, ("feed_forward_in", "feed_forward_out"), activation="relu"
        )
        self.feed_forward_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="feed_forward_dropout"
        )
        self.feed_forward_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="feed_forward_layer_norm"
        )
        self.feed_forward_layer_norm.build(inputs_shape)

    def call(self, inputs, encoder_sequence, encoder_padding_mask=None, decoder_padding_mask=None, training=None):
        attention_mask = None
        if encoder_padding_mask is not None or decoder_padding_mask is not None:
            queries = ops.ones_like(inputs[:, :, :1], dtype="bool")  # [B, Tq, 1]
            keys = ops.ones_like(encoder_sequence[:, None, :, 0], dtype="bool")  # [B, 1, Tk]
            if encoder_padding_mask is not None:
                keys = ops.cast(encoder_padding_mask, "bool")[:, None, :]
            if decoder_padding_mask is not None:
                queries = ops.cast(decoder_padding_mask, "bool")[:, :, None]
            attention_mask = ops.logical_and(queries, keys)  # [B, Tq, Tk]
        attended = self.attention(
            inputs, encoder_sequence, encoder_sequence, attention_mask=attention_mask, training=training
        )
        x = self.layer_norm(inputs + self.output_dropout(attended, training=training))
        if not self.intermediate_dim:
            return x
        fed = self.feed_forward_out(self.feed_forward_in(x))
        return self.feed_forward_layer_norm(x + self.feed_forward_dropout(fed, training=training))

    def compute_output_shape(self, inputs_shape, encoder_sequence_shape=None):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "dropout": self.dropout,
                "intermediate_dim": self.intermediate_dim,
                "attention_dropout": self.attention_dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
