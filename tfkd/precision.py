"""Keras dtype policies: the run's ``train.precision`` (every stage that builds a model runs
under it) and ``decode.precision`` (what a trained student predicts in)."""

import contextlib

# decode.precision: the Keras dtype policy a trained student is rebuilt under to predict
INFERENCE_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


@contextlib.contextmanager
def precision_policy(name):
    """Keras' global dtype policy ``name`` while building models, restored afterwards."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
