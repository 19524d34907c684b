"""Text in, text out: tokenization, decoding and detokenization in one TensorFlow graph.

The same :class:`Translator` graph is used by evaluation, ``tfkd translate`` and the exported
SavedModel, so all three produce identical output for the same sentences.
"""

import inspect
import math

import numpy as np
import tensorflow as tf

from tfkd import registry, stopping
from tfkd.data import SpecialIds, detokenize, tokenize_to_ragged
from tfkd.decoding import NEG_INF
from tfkd.models.abilities import PositionalRange
from tfkd.progress import progress_bar
from tfkd.serving import warn_of_cut_inputs

# the decode section's settings handed to the decoder (beam: beam_size, length_penalty;
# mask_predict: length_candidates, iterations)
DECODE_OPTIONS = ("beam_size", "length_penalty", "early_stopping", "length_candidates", "iterations")


class Translator(tf.Module):
    """Translate raw source strings with a seq2seq student.

    Args:
        model: a student exposing ``encode``/``decode``.
        source_tokenizer: keras-hub tokenizer of the source side.
        target_tokenizer: keras-hub tokenizer of the target side.
        decode_spec: the spec's ``decode`` section (algorithm, its options -- beam size and
            length penalty, length candidates and iterations -- and the max length
            ``a * source_length + b``).
        max_tokens: longest source kept (longer sources are truncated); ``limit`` names the
            setting it comes from.
        bucket_width: with ``decode_spec.jit_compile`` on, sources are padded to a multiple of
            it, so the XLA-compiled decoder sees a bounded set of shapes (one program per
            batch size and bucket; the longest target ``a * padded length + b``).
    """

    def __init__(
        self,
        model,
        source_tokenizer,
        target_tokenizer,
        decode_spec,
        max_tokens,
        bucket_width=8,
        limit="data.max_tokens",
    ):
        super().__init__(name="translator")
        self.model = model
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.source_ids = SpecialIds.of(source_tokenizer)
        self.target_ids = SpecialIds.of(target_tokenizer)
        self.algorithm = decode_spec.algorithm
        # the algorithm's options; every decoder takes them all and ignores those it does not use
        self.decode_options = {name: getattr(decode_spec, name) for name in DECODE_OPTIONS}
        self.max_length_a = decode_spec.max_length_a
        self.max_length_b = decode_spec.max_length_b
        self.batch_size = decode_spec.batch_size
        self.max_tokens = max_tokens
        self.limit = limit  # the setting max_tokens comes from, as the warning of cut inputs names it
        positions = model.max_length if isinstance(model, PositionalRange) else max_tokens
        self.max_target_length = min(max_tokens, positions)
        self.jit_compile = bool(getattr(decode_spec, "jit_compile", False))
        self.bucket_width = bucket_width
        self._compiled = {}
        # autograph off: the decoders use explicit tf.while_loop, as the export does
        self.translate = tf.function(
            self._translate, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False
        )

    def _source(self, sentences):
        """Source ids ``[B, S]`` of raw sentences, the longest target to decode, and which
        sentences are empty (nothing but white space: no source token)."""
        ragged = self.source_tokenizer(sentences)[:, : self.max_tokens]
        source_ids = ragged.to_tensor(default_value=self.source_ids.pad)
        # an empty input still needs one position to attend to: give it a single [UNK]
        source_ids = tf.pad(source_ids, [[0, 0], [0, 1]], constant_values=self.source_ids.pad)
        no_tokens = tf.equal(ragged.row_lengths(), 0)
        first = tf.equal(tf.range(tf.shape(source_ids)[1]), 0)[tf.newaxis]
        source_ids = tf.where(no_tokens[:, tf.newaxis] & first, self.source_ids.unk, source_ids)
        # empty: no token, or nothing but white space and Unicode separators (a no-break or an
        # ideographic space is [UNK] to a WordPiece vocabulary, not nothing)
        empty = no_tokens | tf.strings.regex_full_match(sentences, r"[\s\p{Z}]*")
        longest = tf.cast(tf.reduce_max(ragged.row_lengths()), tf.float32)
        if self.jit_compile:  # a bounded set of shapes: the width rounded up to the bucket's
            width = tf.shape(source_ids)[1]
            padded = _round_up(width, self.bucket_width)
            source_ids = tf.pad(source_ids, [[0, 0], [0, padded - width]], constant_values=self.source_ids.pad)
            longest = tf.cast(padded, tf.float32)
        max_length = tf.cast(tf.math.ceil(self.max_length_a * longest), tf.int32) + self.max_length_b
        return source_ids, tf.minimum(max_length, self.max_target_length), empty

    def _decoder(self, **extra):
        """The decoder as ``(source_ids, max_length) -> (token_ids, scores)``; with
        ``jit_compile``, one XLA-compiled function (compiled once per input shape)."""
        decoder = registry.lookup("decoder", self.algorithm)

        def run(source_ids, max_length, **xla):
            return decoder(self.model, source_ids, self.target_ids, max_length, **self.decode_options, **extra, **xla)

        if not self.jit_compile:
            return run
        key = tuple(sorted(extra.items()))
        if key not in self._compiled:
            # XLA's loops keep their shapes: caches allocated whole rather than grown
            self._compiled[key] = tf.function(
                lambda source_ids, max_length: run(source_ids, max_length, static_shapes=True),
                jit_compile=True,
                autograph=False,
            )
        return self._compiled[key]

    def _decode(self, sentences, **extra):
        """``(token_ids, scores, empty)``: the decoder's output and which sources are empty."""
        source_ids, max_length, empty = self._source(sentences)
        token_ids, scores = self._decoder(**extra)(source_ids, max_length)
        return token_ids, scores, empty

    def _translate(self, sentences):
        token_ids, scores, empty = self._decode(sentences)
        # an empty source (or white space only) translates to the empty string, scored 0,
        # whatever the decoder made of the [UNK] it was given
        text = detokenize(self.target_tokenizer, token_ids, self.target_ids)
        return {
            "translations": tf.where(empty, tf.constant(""), text),
            "scores": tf.where(empty, tf.zeros_like(scores), scores),
        }

    def _score(self, sentences, targets):
        """Teacher-forced scores of given translations (fairseq's ``--score-reference``): the
        target tokenized as training tokenizes it, ``[BOS] y`` in, a distribution at each of
        the ``len(y) + 1`` positions of ``y [EOS]`` out.

        Returns ``{"target_ids" [B, T] int32 (y [EOS], padded), "logits" [B, T, V] float32,
        "log_likelihood" [B] float32}``: the token-level distributions a teacher gives
        (ensemble distillation reads them from an export) and the sentence's log-probability.
        """
        source_ids, _, _ = self._source(sentences)
        ragged = self.target_tokenizer(targets)[:, : self.max_target_length - 1]
        ragged = tf.cast(ragged, tf.int32)
        rows = ragged.nrows()
        eos = tf.fill([rows, 1], self.target_ids.eos)
        bos = tf.fill([rows, 1], self.target_ids.bos)
        target_ids = tf.concat([ragged, eos], axis=1).to_tensor(default_value=self.target_ids.pad)
        decoder_ids = tf.concat([bos, ragged], axis=1).to_tensor(default_value=self.target_ids.pad)
        logits = tf.cast(self.model({"source_ids": source_ids, "decoder_ids": decoder_ids}, training=False), tf.float32)
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        at = tf.gather(log_probs, target_ids, batch_dims=2)
        real = tf.not_equal(target_ids, self.target_ids.pad)
        return {
            "target_ids": target_ids,
            "logits": logits,
            "log_likelihood": tf.reduce_sum(tf.where(real, at, 0.0), axis=1),
        }

    def nbest_function(self, nbest):
        """A ``tf.function``: strings ``[B]`` -> ``{"translations": [B, N], "scores": [B, N]}``,
        the decoder's N best hypotheses per sentence, best first.

        Raises ``ValueError`` when the decoder keeps one hypothesis (greedy) or fewer than N.
        """
        decoder = registry.lookup("decoder", self.algorithm)
        if "nbest" not in inspect.signature(decoder).parameters:
            raise ValueError(
                f"the {self.algorithm} decoder gives one hypothesis per sentence (beam and mask_predict keep several)"
            )

        def translate(sentences):
            token_ids, scores, empty = self._decode(sentences, nbest=nbest)
            shape = tf.shape(token_ids)
            flat = tf.reshape(token_ids, [shape[0] * shape[1], shape[2]])
            text = tf.reshape(detokenize(self.target_tokenizer, flat, self.target_ids), shape[:2])
            # an empty source: one empty hypothesis scored 0, the others unfilled (NEG_INF)
            best = tf.equal(tf.range(shape[1]), 0)[tf.newaxis]
            empty = empty[:, tf.newaxis]
            return {
                "translations": tf.where(empty, tf.constant(""), text),
                "scores": tf.where(empty, tf.where(best, 0.0, tf.cast(NEG_INF, scores.dtype)), scores),
            }

        function = tf.function(translate, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
        function.get_concrete_function()  # trace now: a decoder refusing N raises here
        return function

    def translate_all(self, sentences, progress=False):
        """Translate a Python list in length-sorted batches; results in input order."""
        self.warn_of_cut_inputs(sentences)
        return translate_in_batches(self.translate, sentences, self.batch_size, progress)

    def warn_of_cut_inputs(self, sentences):
        """One warning for the inputs longer than ``max_tokens`` source tokens, which the graph
        translates from their first ``max_tokens`` (:func:`tfkd.serving.warn_of_cut_inputs`);
        returns their input numbers (1-based)."""
        if not sentences:
            return []
        lengths = tokenize_to_ragged(self.source_tokenizer, sentences).row_lengths().numpy()
        return warn_of_cut_inputs(lengths.tolist(), self.max_tokens, self.limit)

    def bucket_lines(self):
        """One source line per width an XLA-compiled decoder compiles a program for: each
        multiple of ``bucket_width`` up to the widest source (``max_tokens`` and the one
        padding position), a word the source tokenizer reads as one token repeated to fill it.
        An export with ``decode.jit_compile`` hands them to TF Serving as warm-up requests, so
        the server compiles every bucket's batch-1 program before it takes traffic."""
        word = self._one_token_word()
        # the widest source: max_tokens and the padding position _source adds
        widths = range(self.bucket_width, _round_up(self.max_tokens + 1, self.bucket_width) + 1, self.bucket_width)
        return [" ".join([word] * min(width - 1, self.max_tokens)) for width in widths]

    def _one_token_word(self):
        """A plain word of the source vocabulary that the tokenizer reads as one token, also
        when repeated (the first such in vocabulary order)."""
        for token in self.source_tokenizer.get_vocabulary():
            word = token.removeprefix("\u2581")  # a SentencePiece piece that starts a word
            if word.isalpha() and word.isascii():
                lengths = tokenize_to_ragged(self.source_tokenizer, [word, f"{word} {word} {word}"]).row_lengths()
                if lengths.numpy().tolist() == [1, 3]:
                    return word
        raise ValueError("no word of the source vocabulary is one token on its own")

    def _source_length(self, sentences):
        """``{"source_tokens": int32 [B]}``: each sentence's source tokens before any cut (the
        export's ``source_length`` signature, which ``tfkd translate`` on an export reads to
        warn of cut inputs)."""
        return {"source_tokens": tf.cast(self.source_tokenizer(sentences).row_lengths(), tf.int32)}


def _round_up(width, multiple):
    """``width`` rounded up to a multiple of ``multiple`` (a Python int or an int tensor)."""
    return (width + multiple - 1) // multiple * multiple


def _length_sorted(translate, sentences, batch_size, progress):
    """Run ``translate`` over ``sentences`` in length-sorted batches; yields ``(input index,
    translation(s), score(s))`` per sentence."""
    order = np.argsort([len(s.split()) for s in sentences], kind="stable")
    steps = math.ceil(len(sentences) / batch_size)
    bar = progress_bar(steps, "batch") if progress else None
    for i in range(steps):
        stopping.raise_if_interrupted()  # Ctrl-C that tracing the first batch swallowed stops here
        index = order[i * batch_size : (i + 1) * batch_size]
        result = translate(tf.constant([sentences[j] for j in index]))
        yield from zip(index, result["translations"].numpy(), result["scores"].numpy())
        if bar:
            bar.update(i + 1)


def translate_in_batches(translate, sentences, batch_size, progress=False):
    """Run ``translate`` (strings -> {"translations", "scores"}) over length-sorted batches.

    Returns ``(translations, scores)`` in input order. ``translate`` may be a
    :class:`Translator`'s function or a loaded SavedModel signature.
    """
    outputs = [None] * len(sentences)
    scores = np.zeros(len(sentences), np.float32)
    for j, text, score in _length_sorted(translate, sentences, batch_size, progress):
        outputs[j], scores[j] = text.decode("utf-8"), score
    return outputs, scores


def nbest_in_batches(translate, sentences, batch_size, progress=False):
    """Run an n-best ``translate`` (:meth:`Translator.nbest_function`) over length-sorted
    batches. Returns, in input order, per sentence a list of ``(translation, score)``, best
    first; hypotheses the decoder could not fill (score -1e9) are left out."""
    outputs = [None] * len(sentences)
    for j, texts, scores in _length_sorted(translate, sentences, batch_size, progress):
        outputs[j] = [(text.decode("utf-8"), float(score)) for text, score in zip(texts, scores) if score > NEG_INF / 2]
    return outputs
