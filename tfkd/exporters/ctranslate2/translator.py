"""Serving a CTranslate2 export: the run's tokenizers around CTranslate2's decoder.

A line goes through what the SavedModel does in its graph, here in Python: the run's source
tokenizer (cut to the run's longest source), CTranslate2's beam search or greedy decoding with
the run's beam size and length penalty and the longest target ``a * longest source + b`` of the
batch, and the run's detokenization. An empty line (or white space only) translates to the empty
string, scored 0, as in the SavedModel.

Beam search keeps tfkd's (fairseq's) rule and scores. CTranslate2 divides a finished
hypothesis's log-probability by ``length ** length_penalty`` where tfkd divides it by GNMT's
``((5 + length) / 6) ** length_penalty``, and it has no GNMT option. Its stopping rule does
not depend on the penalty (with any penalty but 0 a sentence ends once ``beam_size`` of the
step's ``beam_size`` best candidates have ended, as in tfkd's ``early_stopping: beam_size``),
so the hypotheses it finishes are tfkd's; each sentence's ``beam_size`` best of them come
back with their EOS, their log-probabilities are recovered from CTranslate2's scores, and
they are ranked again by GNMT's penalty (:func:`gnmt_best`).
"""

import json
import math
import os

import numpy as np

from tfkd import registry
from tfkd.exporters.ctranslate2.folder import INFO_FILE, VOCAB_DIR, import_ctranslate2, open_runtime
from tfkd.exporters.ctranslate2.transformer import vocabulary

RECOVERABLE_PENALTY = 1e-3  # CTranslate2's penalty when the run has none (its 0 means another rule)


def gnmt_best(hypotheses, scores, ctranslate2_penalty, alpha):
    """The hypothesis (tokens with their EOS, if any) and score tfkd's beam search would keep:
    each log-probability is CTranslate2's ``score * length ** ctranslate2_penalty``, and the best
    is the first highest of ``log P / ((5 + length) / 6) ** alpha`` (ties: CTranslate2's order)."""
    lengths = np.array([len(h) for h in hypotheses], np.float64)
    log_probs = np.asarray(scores, np.float64) * lengths**ctranslate2_penalty
    gnmt = log_probs / ((5.0 + lengths) / 6.0) ** alpha
    best = int(np.argmax(gnmt))
    return hypotheses[best], float(gnmt[best])


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
        # CTranslate2's own penalty: any but 0, which would switch it to another stopping rule
        self.ctranslate2_penalty = max(self.length_penalty, RECOVERABLE_PENALTY) if self.beam_size > 1 else 0.0
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
        # in float32, as the graph computes it (1.2 * 25 is 30 there and 30.000000000000004 here)
        bound = math.ceil(np.float32(self.max_length_a) * np.float32(longest))
        max_length = min(bound + self.max_length_b, self.max_target_length)
        results = self.translator.translate_batch(
            tokens,
            beam_size=self.beam_size,
            num_hypotheses=self.beam_size,
            length_penalty=self.ctranslate2_penalty,
            max_decoding_length=max_length,
            min_decoding_length=0,  # CTranslate2's default 1 would never end a translation at once
            max_input_length=0,
            return_scores=True,
            return_end_token=True,  # lengths count the EOS, as tfkd's do
        )
        best = [gnmt_best(r.hypotheses, r.scores, self.ctranslate2_penalty, self.length_penalty) for r in results]
        end = self.target_ids.eos
        hypotheses = [[i for i in (self.target_index[t] for t in words) if i != end] for words, _ in best]
        width = max((len(h) for h in hypotheses), default=0) + 1
        padded = np.full([len(hypotheses), width], self.target_ids.pad, np.int32)
        for row, hypothesis in enumerate(hypotheses):
            padded[row, : len(hypothesis)] = hypothesis
        scores = np.array([score for _, score in best], np.float32)
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
