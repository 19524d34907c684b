"""``train.jit_compile``: XLA-compiled training steps over a bounded set of batch shapes.

XLA compiles one program per input shape. Batches padded to their longest element have a new
shape almost every step, so a compiled step would compile tens of programs before training
settles. With compilation on, the length-bucketed batches of every task
(:func:`tfkd.data.bucketed_batches`, ``pad_to_bucket``) are padded to their bucket's boundary
instead: a training stream (repeated, so every batch of a bucket is full) then has one shape
per bucket, and the step compiles at most that many programs.

The setting goes with the spec a stage reads: a task's data pipeline pads its batches when
:func:`resolve_jit_compile` of its spec's ``train.jit_compile`` says so, and a stage that fits a
model passes that setting to :func:`tfkd.stages.compile_and_build` (or
:func:`tfkd.training.masked_lm.fit_masked_lm`). Every stage that trains reads its run's
``train`` section (a variant's train stage, the variant's), the teachers' too.

``auto`` is Keras' own rule (``Trainer._resolve_auto_jit_compile``): on where an accelerator is
visible and one device trains, off on CPU-only machines (where ``tools/bench.py`` measures no
gain) and under op determinism (XLA lacks deterministic kernels for some ops).

Importing this module does not import TensorFlow.
"""


def resolve_jit_compile(setting):
    """Whether training steps compiled now are XLA-compiled under ``train.jit_compile`` =
    ``setting`` (``"auto"``, ``True`` or ``False``): ``auto`` resolved as Keras resolves it, for
    the strategy in scope and TensorFlow's op determinism at the time of the call."""
    if setting != "auto":
        return bool(setting)
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    accelerators = [d for d in tf.config.list_physical_devices() if d.device_type != "CPU"]
    one_device = tf.distribute.get_strategy().num_replicas_in_sync == 1
    return bool(accelerators) and one_device and not tf_config.is_op_determinism_enabled()


__all__ = ["resolve_jit_compile"]
