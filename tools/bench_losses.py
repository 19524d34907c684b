"""The label-smoothed cross-entropy with its gradient, as tfkd writes it, against TensorFlow's
fused softmax cross-entropy kernels, on one batch of logits.

    python tools/bench_losses.py [--tokens 1400] [--vocab 5783] [--label-smoothing 0.1] [--rounds 5]

Three ways to the same ``(loss, nll)`` and the same gradient (checked equal before timing):
``tfkd.training.losses.label_smoothed_cross_entropy``; ``sparse_categorical_crossentropy``
(``tf.nn.sparse_softmax_cross_entropy_with_logits``) plus the smoothing term ``logsumexp -
mean``; ``categorical_crossentropy`` against the dense smoothed labels
(``tf.nn.softmax_cross_entropy_with_logits``, with the nll from the sparse kernel without a
gradient). Each is a ``tf.function`` returning the gradient of the summed loss, without and
with XLA, timed in alternating blocks of 10 calls; printed as JSON, milliseconds a call
(median over ``--rounds`` blocks).
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def sparse_plus_smoothing(target_ids, logits, label_smoothing):
    from keras import ops

    logits = ops.cast(logits, "float32")
    nll = ops.sparse_categorical_crossentropy(target_ids, logits, from_logits=True)
    smooth = ops.logsumexp(logits, axis=-1) - ops.mean(logits, axis=-1)
    return (1 - label_smoothing) * nll + label_smoothing * smooth, nll


def dense_smoothed_labels(target_ids, logits, label_smoothing):
    from keras import ops

    logits = ops.cast(logits, "float32")
    vocab = ops.shape(logits)[-1]
    target = ops.one_hot(target_ids, vocab) * (1 - label_smoothing) + label_smoothing / ops.cast(vocab, "float32")
    loss = ops.categorical_crossentropy(target, logits, from_logits=True)
    nll = ops.sparse_categorical_crossentropy(target_ids, ops.stop_gradient(logits), from_logits=True)
    return loss, nll


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1400, help="rows of the logit matrix (target tokens)")
    parser.add_argument("--vocab", type=int, default=5783)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from tfkd.training.losses import label_smoothed_cross_entropy

    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(args.tokens, args.vocab)).astype("float32"))
    ids = tf.constant(rng.integers(0, args.vocab, size=(args.tokens,)).astype("int32"))
    losses = {
        "tfkd": label_smoothed_cross_entropy,
        "sparse kernel + smoothing term": sparse_plus_smoothing,
        "dense smoothed labels kernel": dense_smoothed_labels,
    }

    def gradient_of(loss_fn, jit):
        @tf.function(jit_compile=jit, input_signature=[tf.TensorSpec([None, None]), tf.TensorSpec([None], tf.int32)])
        def step(x, target):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss, nll = loss_fn(target, x, args.label_smoothing)
                total = tf.reduce_sum(loss)
            return tape.gradient(total, x), tf.reduce_sum(nll)

        return step

    report = {
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}; TensorFlow {tf.__version__}",
        "logits": [args.tokens, args.vocab],
        "label_smoothing": args.label_smoothing,
    }
    for jit in (False, True):
        steps = {name: gradient_of(fn, jit) for name, fn in losses.items()}
        reference = [t.numpy() for t in steps["tfkd"](logits, ids)]
        for name, step in steps.items():
            gradient, nll = step(logits, ids)
            np.testing.assert_allclose(gradient.numpy(), reference[0], atol=1e-6, err_msg=name)
            np.testing.assert_allclose(nll.numpy(), reference[1], rtol=1e-5, err_msg=name)
        times = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                start = time.perf_counter()
                for _ in range(10):
                    step(logits, ids)[0].numpy()
                times[name].append(100 * (time.perf_counter() - start))
        report["xla" if jit else "plain"] = {name: round(sorted(t)[len(t) // 2], 1) for name, t in times.items()}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
