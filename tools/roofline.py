"""The matmul arithmetic of a Transformer training step, and the matmul rate a framework reaches
on this CPU in a given precision: what ``tools/bench.py`` sets a measured step against.

A step's FLOPs are those of its matrix products (projections, attention scores and mixing,
feed-forward layers, the output layer), forward and backward (twice the forward: the gradient
of each product in both of its operands), over the batch's padded shapes, as both frameworks
compute them. Element-wise work (softmax, layer norms, dropout, the optimizer) is left out:
the achieved rate is then the step's matmul work over its wall time, and its share of the
measured matmul rate says how much of the step is not matmul-bound.
"""

import time


def transformer_step_flops(student, batch, target_vocab):
    """Forward + backward matmul FLOPs of one training step of an encoder-decoder Transformer
    (``student``: the spec's section: layers, ``hidden_dim``, ``intermediate_dim``) on
    ``batch`` (``({"source_ids" [B, S], "decoder_ids" [B, T]}, target)``): 3x the forward.
    The embeddings are lookups; the output layer is a product over ``target_vocab``."""
    b, s = batch[0]["source_ids"].shape
    t = batch[0]["decoder_ids"].shape[1]
    d, f = student.hidden_dim, student.intermediate_dim
    ns, nt = b * s, b * t

    def dense(n, k, m):
        return 2 * n * k * m

    encoder = 4 * dense(ns, d, d) + 2 * dense(b * s, s, d) + dense(ns, d, f) + dense(ns, f, d)
    self_attention = 4 * dense(nt, d, d) + 2 * dense(b * t, t, d)
    cross_attention = 2 * dense(nt, d, d) + 2 * dense(ns, d, d) + 2 * dense(b * t, s, d)
    decoder = self_attention + cross_attention + dense(nt, d, f) + dense(nt, f, d)
    forward = student.encoder_layers * encoder + student.decoder_layers * decoder + dense(nt, d, target_vocab)
    return 3 * forward


def matmul_rate(framework, precision, rows, inner, columns, repeats=20):
    """GFLOP/s of one ``[rows, inner] x [inner, columns]`` product in ``framework``
    (``tensorflow`` or ``torch``) and ``precision`` (``float32`` or ``bfloat16``), the median of
    ``repeats`` timed runs after a warm-up: the rate the step's matmuls could reach here."""
    flops = 2 * rows * inner * columns
    times = []
    if framework == "tensorflow":
        import tensorflow as tf

        dtype = tf.bfloat16 if precision == "bfloat16" else tf.float32
        a = tf.cast(tf.random.normal([rows, inner]), dtype)
        b = tf.cast(tf.random.normal([inner, columns]), dtype)
        product = tf.function(tf.matmul)
        for i in range(repeats + 3):
            start = time.perf_counter()
            product(a, b).numpy()
            if i >= 3:
                times.append(time.perf_counter() - start)
    else:
        import torch

        dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        a, b = torch.randn(rows, inner, dtype=dtype), torch.randn(inner, columns, dtype=dtype)
        with torch.inference_mode():
            for i in range(repeats + 3):
                start = time.perf_counter()
                torch.matmul(a, b)
                if i >= 3:
                    times.append(time.perf_counter() - start)
    times.sort()
    return flops / times[len(times) // 2] / 1e9
