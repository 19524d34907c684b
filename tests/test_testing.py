"""``tfkd.testing``: its documented example runs, and its layer test catches a broken layer."""

import doctest

import keras
import numpy as np
import pytest

import tfkd
import tfkd.testing


def test_docstring_example_runs():
    result = doctest.testmod(tfkd.testing, raise_on_error=False)
    assert result.attempted > 5 and result.failed == 0


@tfkd.register("adapter", "test_dead_weight")
class DeadWeight(keras.layers.Layer):
    """Creates a weight its call never uses: the layer test must catch the missing gradient."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.dense = keras.layers.Dense(width)
        self.unused = keras.layers.Dense(width)

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.unused.build(input_shape)

    def call(self, inputs):
        return self.dense(inputs)


def test_layer_test_fails_a_layer_with_a_weight_that_gets_no_gradient():
    case = tfkd.testing.TestCase()
    with pytest.raises(AssertionError, match="no gradient for"):
        case.run_layer_test(DeadWeight, {"width": 4}, np.ones((2, 4), "float32"))
