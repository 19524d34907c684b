"""``train.jit_compile``: XLA-compiled training steps over a bounded set of batch shapes.

XLA compiles one program per input shape. Batches padded to their longest element have a new
shape almost every step, so a compiled step would compile tens of programs before training
settles. While a stage runs with compilation on (:func:`jit_compilation`), the length-bucketed
batches of every task (:func:`tfkd.data.bucketed_batches`) are padded to their bucket's
boundary instead: a training stream (repeated, so every batch of a bucket is full) then has one
shape per bucket, and the step compiles at most that many programs.

``auto`` is Keras' own rule (``Trainer._resolve_auto_jit_compile``): on where an accelerator is
visible and one device trains, off on CPU-only machines (where ``tools/bench.py`` measures no
gain) and under op determinism (XLA lacks deterministic kernels for some ops).
"""

import contextlib

_SETTINGS = ["auto"]


@contextlib.contextmanager
def jit_compilation(setting):
    """Run the enclosed stage with ``train.jit_compile`` = ``setting`` (``"auto"``, ``True``
    or ``False``); the previous setting is restored afterwards."""
    _SETTINGS.append(setting)
    try:
        yield
    finally:
        _SETTINGS.pop()


def jit_compile():
    """Whether the training steps compiled now are XLA-compiled: the setting of the running
    stage, ``auto`` resolved as Keras resolves it."""
    setting = _SETTINGS[-1]
    if setting != "auto":
        return bool(setting)
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    accelerators = [d for d in tf.config.list_physical_devices() if d.device_type != "CPU"]
    one_device = tf.distribute.get_strategy().num_replicas_in_sync == 1
    return bool(accelerators) and one_device and not tf_config.is_op_determinism_enabled()


__all__ = ["jit_compilation", "jit_compile"]
