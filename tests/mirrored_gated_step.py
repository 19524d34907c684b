"""Run by test_mask_task_distiller.py in a fresh process: two logical CPU devices must be set
up before TensorFlow initialises. Two gated mask-task steps on one global batch; prints one
JSON line with the losses, the kept fraction and the student's weights."""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import tiny_mask_task as tiny  # noqa: E402

from tfkd.distribute import make_strategy  # noqa: E402


def run(strategy_name, gate):
    strategy = make_strategy(strategy_name)
    inputs, target = tiny.batch()
    with strategy.scope():
        student = tiny.student()
        trainer = tiny.mask_task_trainer(student, alpha=1.0, gate=gate)
        trainer.compile(optimizer=keras.optimizers.SGD(0.5))
        trainer(inputs)
    dataset = tf.data.Dataset.from_tensors((inputs, target))
    history = trainer.fit(dataset.repeat(2), epochs=1, steps_per_epoch=2, verbose=0)
    return {
        "replicas": strategy.num_replicas_in_sync,
        "loss": history.history["loss"][-1],
        "kd": history.history["kd"][-1],
        "kd_kept": history.history["kd_kept"][-1],
        "weights": [w.tolist() for w in student.get_weights()],
    }


gate = sys.argv[1]
print(json.dumps({name: run(name, gate) for name in sys.argv[2:]}))
