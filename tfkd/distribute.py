"""tf.distribute strategy selection (``train.strategy``)."""

import json
import logging
import os

import tensorflow as tf

log = logging.getLogger("tfkd")


def make_strategy(name="auto"):
    """``auto``: multi-worker if TF_CONFIG names several workers, mirrored over several GPUs,
    else the default one-device strategy. ``mirrored`` without GPUs mirrors over the visible
    logical CPU devices (how multi-device behaviour is tested on CPU)."""
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        if len(cluster.get("worker", [])) > 1:
            name = "multi_worker"
        elif len(gpus) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    elif name == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        raise ValueError(f'unknown strategy "{name}"; choices: auto, one_device, mirrored, multi_worker')
    log.info("strategy %s with %d replicas", name, strategy.num_replicas_in_sync)
    return strategy
