"""Run by test_distribute.py in a fresh process: two logical CPU devices must be set up
before TensorFlow initialises. Prints one JSON line with the losses and weights."""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfkd import registry  # noqa: E402
from tfkd.distribute import make_strategy  # noqa: E402
from tfkd.models import TransformerSeq2Seq  # noqa: E402
from tfkd.training import SupervisedTrainer  # noqa: E402


def batch():
    rng = np.random.default_rng(0)
    # uneven padding, so per-replica token counts differ
    source = rng.integers(4, 40, size=(6, 7)).astype("int32")
    target = rng.integers(4, 30, size=(6, 6)).astype("int32")
    for row, keep in enumerate([7, 3, 5, 2, 6, 1]):
        source[row, keep:] = 0
    for row, keep in enumerate([6, 2, 4, 1, 5, 3]):
        target[row, keep:] = 0
    decoder = np.concatenate([np.full((6, 1), 2, "int32"), target[:, :-1]], 1)
    return {"source_ids": source, "decoder_ids": decoder}, target


def run(name):
    """``name``: a strategy, or ``STRATEGY:clip`` for the same run with a global gradient
    norm clip far below the gradient's norm (clipping must see the global batch's gradient)."""
    strategy_name, _, clip = name.partition(":")
    keras.utils.set_random_seed(7)
    strategy = make_strategy(strategy_name)
    inputs, target = batch()
    with strategy.scope():
        student = TransformerSeq2Seq(
            40, 30, encoder_layers=1, decoder_layers=1, hidden_dim=16, intermediate_dim=32, num_heads=2, dropout=0.0
        )
        trainer = SupervisedTrainer(student, registry.lookup("task", "translation"), label_smoothing=0.1)
        trainer.compile(optimizer=keras.optimizers.SGD(0.5, global_clipnorm=0.05 if clip else None))
        trainer(inputs)
    dataset = tf.data.Dataset.from_tensors((inputs, target))
    history = trainer.fit(dataset.repeat(2), epochs=1, steps_per_epoch=2, verbose=0)
    first = float(np.sum([np.sum(np.abs(w)) for w in student.get_weights()]))
    return {
        "replicas": strategy.num_replicas_in_sync,
        "loss": history.history["loss"][-1],
        "nll": history.history["nll"][-1],
        "tokens": history.history["tokens"][-1],
        "grad_norm": history.history["grad_norm"][-1],
        "weight_l1": first,
    }


print(json.dumps({name: run(name) for name in sys.argv[1:]}))
