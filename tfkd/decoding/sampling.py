"""Drawing one target sequence per sentence from a model, inside a TensorFlow graph: what
on-policy distillation trains on (the student's own samples) and what a user asks for diverse
outputs.

At each step the next token is drawn from the model's distribution at ``temperature``
(``softmax(log_probs / temperature)``), restricted to its nucleus when ``top_p < 1``: the
smallest set of most likely tokens whose probability reaches ``top_p`` (Holtzman et al., 2020),
renormalised. Padding and a second BOS are never drawn (:class:`tfkd.decoding._Steps`).
It takes the decoders' calling convention but is not a ``decode.algorithm`` a spec can name
yet: a Python function for the methods that train on samples.

Draws are stateless: the noise of sentence ``i`` at step ``t`` comes from ``seed`` (two int32s)
alone, by the Gumbel-max trick over a ``[B, V]`` uniform draw keyed by ``(seed, t)`` whose row
``i`` is taken. So the same seed gives the same samples, and a sentence's sample does not
depend on which other sentences have already ended (they leave the batch). The scores are the
model's own log-probabilities of the drawn tokens (untempered, over the whole vocabulary).
"""

import tensorflow as tf

from tfkd.decoding import NEG_INF, one_per_sentence


def sampling_log_probs(log_probs, temperature=1.0, top_p=1.0):
    """The log-probabilities tokens are drawn with: ``log_probs / temperature``, outside the
    nucleus of mass ``top_p`` set to -1e9, renormalised (``[R, V]``)."""
    scaled = tf.nn.log_softmax(log_probs / temperature, axis=-1)
    if top_p >= 1.0:
        return scaled
    sorted_log_probs = tf.sort(scaled, axis=-1, direction="DESCENDING")
    before = tf.cumsum(tf.exp(sorted_log_probs), axis=-1, exclusive=True)  # the mass of the more likely
    # the least likely token kept (the most likely always is); ties with it stay in
    cutoff = tf.reduce_min(tf.where(before < top_p, sorted_log_probs, 0.0), axis=-1, keepdims=True)
    keep = scaled >= cutoff
    return tf.nn.log_softmax(tf.where(keep, scaled, NEG_INF), axis=-1)


def draw(log_probs, sentences, batch, step, seed):
    """One token a row from ``log_probs`` ``[R, V]`` (Gumbel-max): row ``r``'s noise is row
    ``sentences[r]`` of a ``[batch, V]`` uniform draw keyed by ``(seed, step)``."""
    step_seed = tf.stack([tf.cast(seed[0], tf.int32), tf.cast(seed[1], tf.int32) + tf.cast(step, tf.int32)])
    uniform = tf.random.stateless_uniform(
        [batch, tf.shape(log_probs)[-1]], seed=step_seed, minval=1e-20, maxval=1.0, dtype=tf.float32
    )
    gumbel = -tf.math.log(-tf.math.log(tf.gather(uniform, sentences)))
    return tf.argmax(log_probs + gumbel, axis=-1, output_type=tf.int32)


def sample_search(
    model, source_ids, special_ids, max_length, temperature=1.0, top_p=1.0, seed=(0, 0), static_shapes=False, **unused
):
    """One sequence per sentence drawn from ``model`` at ``temperature`` within its ``top_p``
    nucleus, reproducible from ``seed`` (see the module). Returns ``(token_ids [B, T],
    log_prob [B])``."""
    if not temperature > 0:
        raise ValueError(f"sampling needs a temperature above 0, not {temperature} (greedy search is its limit)")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p is a probability mass in (0, 1], not {top_p}")
    batch = tf.shape(source_ids)[0]

    def drawn(step, log_probs, sentences):
        return draw(sampling_log_probs(log_probs, temperature, top_p), sentences, batch, step, seed)

    return one_per_sentence(model, source_ids, special_ids, max_length, drawn, static_shapes)


__all__ = ["draw", "sample_search", "sampling_log_probs"]
