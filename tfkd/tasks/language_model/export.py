"""Text in, log-probabilities and a continuation out, in one TensorFlow graph: the
language-model SavedModel's.

Signatures (tokenization and detokenization run inside the graph, so serving needs only
``tensorflow`` and ``tensorflow_text``):

- ``serving_default``: ``text`` (``tf.string [None]``) -> ``token_ids`` (``int32 [None, T]``,
  the text's BPE tokens), ``log_probs`` (``float32 [None, T]``: ``log p(token_t | <|endoftext|>
  token_<t)``, 0 past ``lengths``), ``lengths`` (``int32 [None]``), ``total_log_prob``
  (``float32 [None]``) and ``continuation`` (``tf.string [None]``: up to ``max_new_tokens``
  tokens generated after the text by the run's sampler, stopping at ``<|endoftext|>``; bytes
  that do not form UTF-8 become U+FFFD).
- ``score``: the same without ``continuation`` (no generation).

The in-process scores and continuations (evaluation, ``tfkd predict``, ``tfkd generate`` on a
run directory) come from the same :class:`TextLM` graph, so they equal the export's.
"""

import keras
import keras_hub
import tensorflow as tf

from tfkd.decoding import slice_update_without_xla
from tfkd.tasks.language_model.vocab import END_OF_TEXT


def make_sampler(decode):
    """The keras-hub sampler of a ``decode`` section (greedy, top_k or top_p)."""
    if decode.sampler == "greedy":
        return keras_hub.samplers.GreedySampler(temperature=decode.temperature)
    if decode.sampler == "top_k":
        return keras_hub.samplers.TopKSampler(k=decode.top_k, seed=decode.seed, temperature=decode.temperature)
    return keras_hub.samplers.TopPSampler(p=decode.top_p, seed=decode.seed, temperature=decode.temperature)


class TextLM(tf.Module):
    """Score and continue raw strings with a :class:`~tfkd.models.gpt2_lm.GPT2LM`.

    Args:
        model: the language model (``generate_step`` and logits over positions).
        tokenizer: the run's keras-hub ``GPT2Tokenizer``.
        sampler: a keras-hub sampler for the continuation.
        max_new_tokens: longest continuation.
        stop_at_end: stop a continuation at ``<|endoftext|>`` (false: always ``max_new_tokens``
            tokens, as a latency benchmark wants).
    """

    def __init__(self, model, tokenizer, sampler, max_new_tokens=32, stop_at_end=True):
        super().__init__(name="text_lm")
        self.model = model
        self.tokenizer = tokenizer
        self.sampler = sampler
        # a random sampler's seed state is a variable the SavedModel must keep
        self.sampler_seed = getattr(getattr(sampler, "seed_generator", None), "state", None)
        self.end_id = tokenizer.token_to_id(END_OF_TEXT)
        self.max_new_tokens = max_new_tokens
        self.stop_at_end = stop_at_end
        self.max_length = model.max_sequence_length
        self.score = tf.function(self._score, input_signature=[tf.TensorSpec([None], tf.string)])
        self.generate = tf.function(self._generate, input_signature=[tf.TensorSpec([None], tf.string)])
        self.score_and_generate = tf.function(
            self._score_and_generate, input_signature=[tf.TensorSpec([None], tf.string)]
        )

    def _tokens(self, texts):
        return tf.cast(self.tokenizer(texts), tf.int32)

    def _score(self, texts):
        tokens = self._tokens(texts)[:, : self.max_length]
        rows = tokens.nrows()
        framed = tf.concat([tf.RaggedTensor.from_tensor(tf.fill([rows, 1], self.end_id)), tokens], axis=1)
        dense = framed.to_tensor(0)
        lengths = tf.cast(tokens.row_lengths(), tf.int32)
        inputs = dense[:, :-1]
        targets = dense[:, 1:]
        mask = tf.sequence_mask(lengths, tf.shape(targets)[1])
        logits = tf.cast(self.model({"token_ids": inputs, "padding_mask": mask}, training=False), tf.float32)
        log_probs = tf.gather(tf.nn.log_softmax(logits, axis=-1), targets, batch_dims=2)
        log_probs = tf.where(mask, log_probs, 0.0)
        return {
            "token_ids": targets * tf.cast(mask, tf.int32),
            "log_probs": log_probs,
            "lengths": lengths,
            "total_log_prob": tf.reduce_sum(log_probs, axis=1),
        }

    def _generate(self, texts):
        room = self.max_length - self.max_new_tokens - 1
        tokens = self._tokens(texts)
        # the prompt's last tokens that fit before the continuation
        starts = tf.maximum(tokens.row_lengths() - room, 0)
        tokens = tf.RaggedTensor.from_row_lengths(
            tf.gather(
                tokens.flat_values, tf.ragged.range(tokens.row_starts() + starts, tokens.row_limits()).flat_values
            ),
            tokens.row_lengths() - starts,
        )
        rows = tokens.nrows()
        prompt = tf.concat([tf.RaggedTensor.from_tensor(tf.fill([rows, 1], self.end_id)), tokens], axis=1)
        prompt_lengths = tf.cast(prompt.row_lengths(), tf.int32)
        width = tf.reduce_max(prompt_lengths) + self.max_new_tokens
        # the positions to fill must not hold the stop id (keras-hub's samplers stop once every
        # row has one there)
        fill = 1 if self.end_id == 0 else 0
        token_ids = prompt.to_tensor(fill, shape=tf.stack([tf.cast(rows, tf.int32), width]))
        prompt_mask = tf.sequence_mask(prompt_lengths, width)
        with slice_update_without_xla():  # no XLA compilation per batch shape
            out = self.model.generate_step(
                token_ids, prompt_mask, self.sampler, stop_token_ids=(self.end_id,) if self.stop_at_end else None
            )
        new = tf.logical_and(out["padding_mask"], tf.logical_not(prompt_mask))
        new = tf.logical_and(new, tf.not_equal(out["token_ids"], self.end_id))
        # a row with a shorter prompt than the longest: its first max_new_tokens only
        new = tf.logical_and(new, tf.sequence_mask(prompt_lengths + self.max_new_tokens, width))
        continuation = tf.ragged.boolean_mask(out["token_ids"], new)
        text = self.tokenizer.detokenize(continuation)
        # byte-level tokens may end inside a character: U+FFFD for bytes that are not UTF-8, as
        # Hugging Face's decode does (errors="replace")
        return {"continuation": tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")}

    def _score_and_generate(self, texts):
        return {**self._score(texts), **self._generate(texts)}

    def resources(self):
        """What an export of this graph must track itself (see
        :func:`tfkd.exporters.text_saved_model.write_text_saved_model`): the tokenizer's tables
        and a random sampler's seed state."""
        seed = self.sampler_seed
        seeds = [] if seed is None else [getattr(seed, "_value", None) or seed.value]
        return [*tokenizer_resources(self.tokenizer), *seeds]


def tokenizer_resources(tokenizer):
    """The TensorFlow resources keras-hub's BPE tokenizer keeps as plain attributes (its lookup
    tables and the cache of words already split), which an export must track itself."""
    return [
        value
        for value in vars(tokenizer).values()
        if isinstance(value, tf.__internal__.tracking.Trackable)
        and not isinstance(value, keras.layers.Layer)
        and not isinstance(value, (tf.Tensor, tf.Variable))
    ]
