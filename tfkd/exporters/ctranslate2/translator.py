"""Serving a CTranslate2 export: the run's tokenizers around CTranslate2's decoder.

A line goes through what the SavedModel does in its graph, here in Python: the run's source
tokenizer (cut to the run's longest source), CTranslate2's beam search or greedy decoding with
the run's beam size and length penalty and the longest target ``a * longest source + b`` of the
batch, and the run's detokenization. An empty line (or white space only) translates to the empty
string, scored 0, as in the SavedModel.

Where CTranslate2 and tfkd's beam search differ (see docs/serving.md, "CTranslate2"): the
length penalty is CTranslate2's ``score / length ** length_penalty`` where tfkd's is GNMT's
``score / ((5 + length) / 6) ** length_penalty``; scores are CTranslate2's.
"""

import json
import math
import os

import numpy as np

from tfkd import registry
from tfkd.exporters.ctranslate2.folder import INFO_FILE, VOCAB_DIR, import_ctranslate2, open_runtime
from tfkd.exporters.ctranslate2.transformer import vocabulary


class CTranslate2Translator:
    """Translate raw strings with a CTranslate2 export folder ``path``.

    Args:
        path: the folder ``tfkd export --format ctranslate2`` wrote.
        device: ``cpu`` or ``cuda``.
        compute_type: CTranslate2's (``default``: as the export was quantized).
        intra_threads: OpenMP threads per call (default:
            :func:`~tfkd.exporters.ctranslate2.folder.default_threads` of the weights' type).
    """

    def __init__(self, path, device="cpu", compute_type="default", intra_threads=None):
        import tensorflow as tf

        from tfkd.data import UNK, SpecialIds

        import_ctranslate2()  # one line if it is missing, before the tokenizers load
        with open(os.path.join(path, INFO_FILE)) as f:
            self.info = json.load(f)
        tokenizers = registry.lookup("task", self.info["task"]).load_tokenizers(os.path.join(path, VOCAB_DIR))
        self.source_tokenizer, self.target_tokenizer = tokenizers.source, tokenizers.target
        self.source_vocabulary = vocabulary(self.source_tokenizer)
        self.target_index = {token: i for i, token in enumerate(vocabulary(self.target_tokenizer))}
        self.target_ids = SpecialIds.of(self.target_tokenizer)
        self.unk = UNK
        decode = self.info["decode"]
        self.beam_size = decode["beam_size"] if decode["algorithm"] == "beam" else 1
        self.length_penalty = decode["length_penalty"] if decode["algorithm"] == "beam" else 0.0
        self.max_length_a, self.max_length_b = decode["max_length_a"], decode["max_length_b"]
        self.batch_size = decode["batch_size"]
        self.max_tokens = self.info["max_tokens"]
        self.max_target_length = self.info["max_target_length"]
        self.translator = open_runtime("Translator", path, self.info, device, compute_type, intra_threads)
        # tfkd's tokenization and detokenization around each call, each one traced graph (as
        # eager ops, they cost a batch of one sentence about as much as a decoder step)
        self._prepare = tf.function(self._prepare_graph, input_signature=[tf.TensorSpec([None], tf.string)])
        self._finish = tf.function(
            self._finish_graph,
            input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.bool)],
        )
        self.tf = tf

    def _prepare_graph(self, sentences):
        """Source ids of ``sentences``, and which are empty (or white space only)."""
        ids = self.source_tokenizer.tokenize(sentences)
        return ids, self.tf.strings.regex_full_match(sentences, r"[\s\p{Z}]*")

    def _finish_graph(self, hypotheses, empty):
        from tfkd.data import detokenize

        tf = self.tf
        return tf.where(empty, tf.constant(""), detokenize(self.target_tokenizer, hypotheses, self.target_ids))

    def _translate(self, sentences):
        """``{"translations": tf.string [B], "scores": float32 [B]}`` of a batch (a list or a
        ``tf.string`` tensor), as the SavedModel's signature answers."""
        tf = self.tf
        ids, blank = self._prepare(tf.convert_to_tensor(sentences, tf.string))
        ids = [row[: self.max_tokens] for row in ids.to_list()]
        empty = np.logical_or([not row for row in ids], blank.numpy())
        tokens = [[self.source_vocabulary[i] for i in row] or [self.unk] for row in ids]
        longest = max((len(row) for row in ids), default=0)
        max_length = min(math.ceil(self.max_length_a * longest) + self.max_length_b, self.max_target_length)
        results = self.translator.translate_batch(
            tokens,
            beam_size=self.beam_size,
            length_penalty=self.length_penalty,
            max_decoding_length=max_length,
            min_decoding_length=0,  # CTranslate2's default 1 would never end a translation at once
            max_input_length=0,
            return_scores=True,
        )
        hypotheses = [[self.target_index[t] for t in r.hypotheses[0]] for r in results]
        width = max((len(h) for h in hypotheses), default=0) + 1
        padded = np.full([len(hypotheses), width], self.target_ids.pad, np.int32)
        for row, hypothesis in enumerate(hypotheses):
            padded[row, : len(hypothesis)] = hypothesis
        scores = np.array([r.scores[0] for r in results], np.float32)
        return {
            "translations": self._finish(padded, empty),
            "scores": tf.constant(np.where(empty, 0.0, scores), tf.float32),
        }

    def translate_all(self, sentences, progress=False):
        """``(translations, scores)`` of a Python list, in length-sorted batches (as the
        SavedModel's predictor sends them), in input order."""
        from tfkd.progress import progress_bar
        from tfkd.serving import warn_of_cut_inputs

        if sentences:
            lengths = self._prepare(self.tf.constant(sentences, self.tf.string))[0].row_lengths().numpy()
            warn_of_cut_inputs(lengths.tolist(), self.max_tokens, "data.max_tokens")
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i].split()))
        translations, scores = [None] * len(sentences), np.zeros(len(sentences), np.float32)
        bar = progress_bar(math.ceil(len(sentences) / self.batch_size), "batch") if progress else None
        for start in range(0, len(sentences), self.batch_size):
            index = order[start : start + self.batch_size]
            result = self._translate([sentences[i] for i in index])
            for i, text, score in zip(index, result["translations"].numpy(), result["scores"].numpy()):
                translations[i], scores[i] = text.decode("utf-8"), score
            if bar:
                bar.update(start // self.batch_size + 1)
        return translations, scores
