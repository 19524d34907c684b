"""tf.distribute strategy selection (``train.strategy``) and the workers of a multi-worker run.

A multi-worker run is the same ``tfkd run SPEC`` started on every machine with a ``TF_CONFIG``
that names the cluster and the process's own task. ``MultiWorkerMirroredStrategy`` has to be
created before TensorFlow starts its runtime, so ``tfkd run`` creates it first
(:func:`start_multi_worker`) and :func:`make_strategy` hands that one out. The chief (the
``chief`` task, else worker 0) runs every stage and alone writes the run directory; the other
workers run only the stages that train under the strategy (:attr:`tfkd.runner.Stage.runs_on_every_worker`),
each into a scratch folder of its own, and resume from the chief's checkpoint.

Importing this module does not import TensorFlow.
"""

import json
import logging
import os
from typing import NamedTuple

from tfkd.errors import DistributeError, first_line

log = logging.getLogger("tfkd")

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")

_started = {}  # the process's MultiWorkerMirroredStrategy, made once (TensorFlow allows one)


class WorkerRole(NamedTuple):
    """This process in a ``TF_CONFIG`` cluster: its place among ``count`` training tasks (the
    chief first) and whether it is the chief, the one that writes."""

    index: int
    count: int
    chief: bool
    task: str  # "worker:1", as TF_CONFIG names it


def cluster_role(environ=None):
    """This process's :class:`WorkerRole` from ``TF_CONFIG``, or ``None`` when it names fewer
    than two training tasks (``chief`` and ``worker``). A malformed ``TF_CONFIG`` is a
    :class:`DistributeError`."""
    text = (environ if environ is not None else os.environ).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster = config.get("cluster", {})
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        task = config.get("task", {})
        kind, index = task.get("type"), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as e:
        raise DistributeError(
            f"TF_CONFIG: not a cluster description ({e}); expected "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    tasks = [("chief", i) for i in range(len(chiefs))] + [("worker", i) for i in range(len(workers))]
    if len(tasks) < 2:
        return None
    if (kind, index) not in tasks:
        raise DistributeError(
            f"TF_CONFIG: task {kind}:{index} is not in its cluster ({len(chiefs)} chief, {len(workers)} workers)"
        )
    position = tasks.index((kind, index))
    return WorkerRole(position, len(tasks), position == 0, f"{kind}:{index}")


def wants_multi_worker(strategy_name, environ=None):
    """Whether ``train.strategy`` (``auto`` or ``multi_worker``) with this ``TF_CONFIG`` makes a
    multi-worker run; a cluster with another strategy is a :class:`DistributeError` (every
    process would otherwise train alone into the same run directory)."""
    role = cluster_role(environ)
    if role is None:
        return False
    if strategy_name not in ("auto", "multi_worker"):
        raise DistributeError(
            f"train.strategy: {strategy_name}, but TF_CONFIG names a cluster of {role.count} "
            "training tasks: set train.strategy to multi_worker (or auto), or unset TF_CONFIG"
        )
    return True


def start_multi_worker():
    """Create the process's ``MultiWorkerMirroredStrategy`` (before TensorFlow's runtime
    starts: ``tfkd run`` calls this first). It connects to the other workers and waits until
    every one of them has started."""
    if "strategy" not in _started:
        import tensorflow as tf
        from tensorflow.python.eager import context

        if context.context()._context_handle is not None:
            raise DistributeError(
                "train.strategy: multi_worker: TensorFlow had already started in this process; "
                "a multi-worker run must create its strategy first (start it with tfkd run, or call "
                "tfkd.distribute.start_multi_worker() before any TensorFlow operation)"
            )
        role = cluster_role() or WorkerRole(0, 1, True, "worker:0")
        _started["strategy"] = tf.distribute.MultiWorkerMirroredStrategy()
        _started["role"] = role if role.count > 1 else None
        log.info(
            "multi-worker: task %s (worker %d of %d%s) joined its cluster",
            role.task,
            role.index + 1,
            role.count,
            ", the chief: it writes the run" if role.chief else "",
        )
    return _started["strategy"]


def is_multi_worker(strategy):
    """Whether ``strategy`` is this process's multi-worker strategy, with other workers."""
    return current_worker() is not None and strategy is _started["strategy"]


def trains_on_every_worker(model):
    """Whether ``model`` was built under this process's multi-worker strategy (so its steps
    need every worker), not on one device of the chief (a teacher's fine-tuning, say)."""
    return is_multi_worker(getattr(model, "distribute_strategy", None))


def current_worker():
    """This process's :class:`WorkerRole` when it is part of a started multi-worker run, else ``None``."""
    return _started.get("role")


_END_KEY = "tfkd/chief_end"


def announce_chief_end(status):
    """The chief: tell the other workers that the run ended, ``ok`` or why not (in the
    cluster's key-value store)."""
    from tensorflow.python.eager import context

    context.context().set_config_key_value(_END_KEY, status)


def chief_end(timeout_seconds=None):
    """What the chief announced at its end (``ok`` or why not), waiting for it up to
    ``timeout_seconds`` (``None``: until it comes); ``None`` when it has not yet. A chief that
    vanished is a :class:`DistributeError`."""
    import tensorflow as tf
    from tensorflow.python.eager import context

    try:
        return context.context().get_config_key_value(_END_KEY, int(timeout_seconds * 1000) if timeout_seconds else 0)
    except tf.errors.DeadlineExceededError:
        return None
    except tf.errors.OpError as e:
        raise DistributeError(
            f"lost the chief of the TF_CONFIG cluster ({first_line(e)}); start every worker again"
        ) from None


def make_strategy(name="auto"):
    """``auto``: the multi-worker strategy if ``TF_CONFIG`` names a cluster, mirrored over
    several GPUs, else the default one-device strategy. ``mirrored`` without GPUs mirrors over
    the visible logical CPU devices (how multi-device behaviour is tested on CPU). ``tpu``:
    ``TPUStrategy`` on the TPU that ``TPU_NAME`` names (or the TPU VM's own)."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise DistributeError(f'unknown strategy "{name}"; choices: {", ".join(STRATEGIES)}')
    if name == "multi_worker" or (name == "auto" and wants_multi_worker(name)):
        strategy = start_multi_worker()
        log.info("strategy multi_worker with %d replicas", strategy.num_replicas_in_sync)
        return strategy
    wants_multi_worker(name)  # a cluster with another strategy is refused
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) <= 1:
            return tf.distribute.get_strategy()
        name = "mirrored"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        strategy = _tpu_strategy(tf)
    log.info("strategy %s with %d replicas", name, strategy.num_replicas_in_sync)
    return strategy


def _tpu_strategy(tf):
    """``TPUStrategy`` on the TPU named by ``TPU_NAME`` (a Cloud TPU's name or ``grpc://`` address;
    empty on a TPU VM), connected and initialised."""
    address = os.environ.get("TPU_NAME", "")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, OSError, tf.errors.OpError) as e:  # OSError: the metadata server of a cloud VM
        raise DistributeError(
            f"train.strategy: tpu: no TPU reachable{' at ' + address if address else ''} "
            f"({first_line(e)}); "
            "run on a TPU VM, or set TPU_NAME to the TPU's name or grpc:// address"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def weights_fingerprint(variables):
    """The first 16 hex digits of the SHA-256 of ``variables``' values, in order."""
    import hashlib

    import numpy as np
    from keras import ops

    digest = hashlib.sha256()
    for variable in variables:
        digest.update(np.ascontiguousarray(ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()[:16]


def check_workers_agree(model, stage):
    """After a multi-worker stage's training: compare ``model``'s trainable weights across the
    workers (every replica's fingerprint, gathered), log the fingerprint, and raise
    :class:`DistributeError` when a worker's copy differs (every worker raises it). Every
    worker must call it."""
    import numpy as np
    import tensorflow as tf

    strategy = _started["strategy"]
    fingerprint = weights_fingerprint(model.trainable_variables)
    value = tf.constant(np.frombuffer(bytes.fromhex(fingerprint), dtype=np.int32)[None])

    @tf.function
    def gathered():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_gather(value, axis=0))

    every = strategy.experimental_local_results(gathered())[0].numpy()
    role = current_worker()
    if not (every == value.numpy()).all():
        raise DistributeError(
            f"{stage}: the workers' weights differ after training (this is task {role.task}, "
            f"fingerprint {fingerprint}); a worker read other data or ran other code"
        )
    log.info("%s: the weights of all %d workers agree (fingerprint %s)", stage, role.count, fingerprint)
    return fingerprint


def shard_by_batch(dataset):
    """``dataset`` (of whole batches) with tf.distribute's auto-sharding set to split each
    batch across the replicas of every worker (``DATA``), so a multi-worker step trains on the
    same global batch as one device would (the default tries to give workers whole files)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


__all__ = [
    "DistributeError",
    "STRATEGIES",
    "WorkerRole",
    "announce_chief_end",
    "check_workers_agree",
    "chief_end",
    "cluster_role",
    "current_worker",
    "is_multi_worker",
    "make_strategy",
    "shard_by_batch",
    "start_multi_worker",
    "trains_on_every_worker",
    "wants_multi_worker",
    "weights_fingerprint",
]
