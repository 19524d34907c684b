"""Text in, log-probabilities and a continuation out, in one TensorFlow graph; and the
language-model SavedModel.

Signatures (tokenization and detokenization run inside the graph, so serving needs only
``tensorflow`` and ``tensorflow_text``):

- ``serving_default``: ``text`` (``tf.string [None]``) -> ``token_ids`` (``int32 [None, T]``,
  the text's BPE tokens), ``log_probs`` (``float32 [None, T]``: ``log p(token_t | <|endoftext|>
  token_<t)``, 0 past ``lengths``), ``lengths`` (``int32 [None]``), ``total_log_prob``
  (``float32 [None]``) and ``continuation`` (``tf.string [None]``: up to ``max_new_tokens``
  tokens generated after the text by the run's sampler, stopping at ``<|endoftext|>``).
- ``score``: the same without ``continuation`` (no generation).

The in-process scores and continuations (evaluation, ``tfkd predict``, ``tfkd generate`` on a
run directory) come from the same :class:`TextLM` graph, so they equal the export's.
"""

import os

import keras
import keras_hub
import tensorflow as tf

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
    """

    def __init__(self, model, tokenizer, sampler, max_new_tokens=32):
        super().__init__(name="text_lm")
        self.model = model
        self.tokenizer = tokenizer
        self.sampler = sampler
        # a random sampler's seed state is a variable the SavedModel must keep
        self.sampler_seed = getattr(getattr(sampler, "seed_generator", None), "state", None)
        self.end_id = tokenizer.token_to_id(END_OF_TEXT)
        self.max_new_tokens = max_new_tokens
        self.max_length = model.max_sequence_length
        self.score = tf.function(self._score, input_signature=[tf.TensorSpec([None], tf.string)])
        self.generate = tf.function(self._generate, input_signature=[tf.TensorSpec([None], tf.string)])
        self.score_and_generate = tf.function(self._score_and_generate,
                                              input_signature=[tf.TensorSpec([None], tf.string)])

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
        return {"token_ids": targets * tf.cast(mask, tf.int32), "log_probs": log_probs, "lengths": lengths,
                "total_log_prob": tf.reduce_sum(log_probs, axis=1)}

    def _generate(self, texts):
        room = self.max_length - self.max_new_tokens - 1
        tokens = self._tokens(texts)
        # the prompt's last tokens that fit before the continuation
        starts = tf.maximum(tokens.row_lengths() - room, 0)
        tokens = tf.RaggedTensor.from_row_lengths(
            tf.gather(tokens.flat_values, tf.ragged.range(tokens.row_starts() + starts, tokens.row_limits()).flat_values),
            tokens.row_lengths() - starts)
        rows = tokens.nrows()
        prompt = tf.concat([tf.RaggedTensor.from_tensor(tf.fill([rows, 1], self.end_id)), tokens], axis=1)
        prompt_lengths = tf.cast(prompt.row_lengths(), tf.int32)
        width = tf.reduce_max(prompt_lengths) + self.max_new_tokens
        token_ids = prompt.to_tensor(0, shape=[rows, width])
        prompt_mask = tf.sequence_mask(prompt_lengths, width)
        out = self.model.generate_step(token_ids, prompt_mask, self.sampler, stop_token_ids=(self.end_id,))
        new = tf.logical_and(out["padding_mask"], tf.logical_not(prompt_mask))
        new = tf.logical_and(new, tf.not_equal(out["token_ids"], self.end_id))
        continuation = tf.ragged.boolean_mask(out["token_ids"], new)
        return {"continuation": self.tokenizer.detokenize(continuation)}

    def _score_and_generate(self, texts):
        return {**self._score(texts), **self._generate(texts)}


def write_language_model_saved_model(text_lm, path):
    archive = keras.export.ExportArchive()
    if text_lm.sampler_seed is not None:
        archive.track(text_lm.sampler.seed_generator)
    archive.add_endpoint("serving_default", text_lm._score_and_generate,
                         input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    archive.add_endpoint("score", text_lm._score, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    archive.write_out(path, verbose=False)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
