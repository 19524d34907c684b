"""Test helpers for tfkd layers and user layers, in the style of keras-hub's TestCase.

>>> import keras, numpy as np, unittest
>>> import tfkd, tfkd.testing
>>> @tfkd.register("adapter", "docstring_scale")   # registered layers serialise by name
... class Scale(keras.layers.Layer):
...     def __init__(self, width, **kwargs):
...         super().__init__(**kwargs)
...         self.width = width
...     def build(self, input_shape):
...         self.scale = self.add_weight(shape=(self.width,), initializer="ones")
...     def call(self, inputs):
...         return inputs * self.scale
...     def get_config(self):
...         return {**super().get_config(), "width": self.width}
>>> class ScaleTest(tfkd.testing.TestCase):
...     def test_layer(self):
...         self.run_layer_test(Scale, {"width": 8}, np.ones((2, 3, 8), "float32"),
...                             expected_output_shape=(2, 3, 8))
>>> result = unittest.TextTestRunner(stream=open("/dev/null", "w")).run(
...     unittest.defaultTestLoader.loadTestsFromTestCase(ScaleTest))
>>> result.wasSuccessful()
True
"""

import unittest

import keras
import numpy as np


class TestCase(unittest.TestCase):
    def assertAllClose(self, x, y, atol=1e-6, rtol=1e-6, msg=None):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(x),
            keras.ops.convert_to_numpy(y),
            atol=atol,
            rtol=rtol,
            err_msg=msg or "",
        )

    def run_serialization_test(self, instance):
        """``get_config`` -> ``from_config`` and ``serialize`` -> ``deserialize`` round trips."""
        config = instance.get_config()
        revived = instance.__class__.from_config(config)
        self.assertEqual(config, revived.get_config())
        serialized = keras.saving.serialize_keras_object(instance)
        revived = keras.saving.deserialize_keras_object(serialized)
        self.assertIsInstance(revived, instance.__class__)
        self.assertEqual(config, revived.get_config())
        return revived

    def run_layer_test(self, layer_cls, init_kwargs, input_data, call_kwargs=None, expected_output_shape=None):
        """Build, call, check output shape, trainable weights get gradients, and round-trip
        serialization with identical outputs once the weights are copied."""
        import tensorflow as tf

        call_kwargs = call_kwargs or {}
        layer = layer_cls(**init_kwargs)
        output = layer(input_data, **call_kwargs)
        if expected_output_shape is not None:
            self.assertEqual(tuple(output.shape), tuple(expected_output_shape))
        with tf.GradientTape() as tape:
            loss = keras.ops.sum(keras.ops.cast(layer(input_data, **call_kwargs), "float32"))
        grads = tape.gradient(loss, layer.trainable_variables)
        for var, grad in zip(layer.trainable_variables, grads):
            self.assertIsNotNone(grad, f"no gradient for {var.path}")
        revived = self.run_serialization_test(layer)
        revived(input_data, **call_kwargs)
        revived.set_weights(layer.get_weights())
        self.assertAllClose(layer(input_data, **call_kwargs), revived(input_data, **call_kwargs), atol=1e-5)
        return layer
