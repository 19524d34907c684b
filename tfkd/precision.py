"""The numeric settings a stage runs under: Keras dtype policies (the run's
``train.precision``, under which every stage that builds a model runs, and ``decode.precision``,
what a trained student predicts in) and TensorFlow's op determinism (``train.deterministic``)."""

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


@contextlib.contextmanager
def op_determinism(enabled):
    """``train.deterministic``: TensorFlow's op determinism
    (``tf.config.experimental.enable_op_determinism``: deterministic kernels, ordered tf.data,
    an error from an op that has no deterministic implementation) while a stage runs (every
    stage that trains: the teacher's fine-tuning as well as the students), restored afterwards.
    ``False`` leaves the setting as it is (and TensorFlow unimported)."""
    if not enabled:
        yield
        return
    from tensorflow.python.framework import config as tf_config

    previous = tf_config.is_op_determinism_enabled()
    if not previous:
        tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if not previous:
            tf_config.disable_op_determinism()
