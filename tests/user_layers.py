"""A user's own layer, registered outside tfkd (used by the registry and export tests)."""

import keras
from keras import ops

import tfkd


@tfkd.register("encoder_layer", "gated_residual_encoder")
class GatedResidualEncoder(keras.layers.Layer):
    """A toy encoder block: x + sigmoid(g(x)) * relu(f(x)), masked at padding."""

    def __init__(self, intermediate_dim, gate_bias=0.0, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_dim = intermediate_dim
        self.gate_bias = gate_bias

    def build(self, input_shape):
        width = input_shape[-1]
        self.inner = keras.layers.Dense(self.intermediate_dim, activation="relu", name="inner")
        self.outer = keras.layers.Dense(width, name="outer")
        self.gate = keras.layers.Dense(width, bias_initializer=keras.initializers.Constant(self.gate_bias), name="gate")
        self.inner.build(input_shape)
        self.outer.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))
        self.gate.build(input_shape)

    def call(self, inputs, padding_mask=None, training=None):
        update = ops.sigmoid(self.gate(inputs)) * self.outer(self.inner(inputs))
        if padding_mask is not None:
            update = update * ops.cast(ops.expand_dims(padding_mask, -1), update.dtype)
        return inputs + update

    def get_config(self):
        config = super().get_config()
        config.update({"intermediate_dim": self.intermediate_dim, "gate_bias": self.gate_bias})
        return config
