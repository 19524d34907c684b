"""Keras dtype policies (tfkd/precision.py): set while models are built, restored after."""

import keras
import pytest

from tfkd.precision import INFERENCE_POLICIES, precision_policy


def test_precision_policy_is_restored():
    previous = keras.mixed_precision.global_policy().name
    with precision_policy("mixed_bfloat16"):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert keras.layers.Dense(2).compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == previous
    with pytest.raises(RuntimeError, match="boom"):
        with precision_policy("mixed_float16"):
            raise RuntimeError("boom")
    assert keras.mixed_precision.global_policy().name == previous


def test_each_decode_precision_is_a_keras_policy():
    for name, policy in INFERENCE_POLICIES.items():
        assert keras.dtype_policies.get(policy).compute_dtype == name
