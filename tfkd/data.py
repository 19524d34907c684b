"""Corpora, tokenizers and tf.data pipelines.

Corpora are aligned text files (``{dir}/{split}.{lang}``) or TFDS translation datasets.
Tokenizers are keras-hub WordPiece tokenizers: a vocabulary learned from the training data
with ``keras_hub.tokenizers.compute_word_piece_vocabulary`` (saved into the run directory), or
the teacher checkpoint's own vocabulary. Training batches are bucketed by length under a
token budget (``batch_tokens`` padded tokens per side).
"""

import dataclasses
import logging
import os

import keras_hub
import numpy as np
import tensorflow as tf

log = logging.getLogger("tfkd")

PAD, UNK, BOS, EOS, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
RESERVED_TOKENS = [PAD, UNK, BOS, EOS, MASK]


class DataError(ValueError):
    """Bad input data; the message names the file (and line) at fault."""


# ----------------------------------------------------------------------------- corpora


@dataclasses.dataclass
class ParallelCorpus:
    """Aligned source/target sentences of one split, with where they came from."""

    source: list
    target: list
    origin: str

    def __len__(self):
        return len(self.source)


def _read_lines(path):
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        raw = f.read().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    lines = []
    for number, line in enumerate(raw, start=1):
        try:
            lines.append(line.decode("utf-8").strip())
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{number}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return lines


def read_text_split(directory, split, src_lang, tgt_lang, limit=None):
    """Read ``{directory}/{split}.{src_lang}`` and ``.{tgt_lang}``; they must have equal lines."""
    src_path = os.path.join(directory, f"{split}.{src_lang}")
    tgt_path = os.path.join(directory, f"{split}.{tgt_lang}")
    source, target = _read_lines(src_path), _read_lines(tgt_path)
    if len(source) != len(target):
        raise DataError(
            f"misaligned corpus: {src_path} has {len(source)} lines but {tgt_path} has "
            f"{len(target)} lines"
        )
    if limit:
        source, target = source[:limit], target[:limit]
    return ParallelCorpus(source, target, f"{src_path} + {tgt_path}")


def read_tfds_split(name, split, src_lang, tgt_lang, data_dir=None, limit=None):
    """A TFDS translation dataset (features keyed by language code)."""
    import tensorflow_datasets as tfds

    tfds_split = {"valid": "validation"}.get(split, split)
    if limit:
        tfds_split = f"{tfds_split}[:{limit}]"
    try:
        dataset = tfds.load(name, split=tfds_split, data_dir=data_dir, download=False)
    except Exception as e:  # TFDS raises many types; the message is what matters
        raise DataError(
            f"tfds {name} split {tfds_split} (data_dir={data_dir}): cannot load: "
            f"{str(e).splitlines()[0]}"
        ) from None
    source, target = [], []
    for example in tfds.as_numpy(dataset):
        for lang in (src_lang, tgt_lang):
            if lang not in example:
                raise DataError(f"tfds {name}: no feature {lang!r}; features: {sorted(example)}")
        source.append(example[src_lang].decode("utf-8").strip())
        target.append(example[tgt_lang].decode("utf-8").strip())
    return ParallelCorpus(source, target, f"tfds:{name}/{tfds_split}")


def read_split(data_spec, split_key):
    """The corpus of ``train`` / ``valid`` / ``test`` as the spec's data section says."""
    split = getattr(data_spec, f"{split_key}_split")
    limit = getattr(data_spec, f"{split_key}_limit")
    if data_spec.source == "text":
        return read_text_split(data_spec.dir, split, data_spec.src_lang, data_spec.tgt_lang, limit)
    return read_tfds_split(
        data_spec.tfds, split, data_spec.src_lang, data_spec.tgt_lang, data_spec.data_dir, limit
    )


# ----------------------------------------------------------------------------- tokenizers


def learn_vocabulary(sentences, tokenizer_spec, path):
    """Learn a WordPiece vocabulary with keras-hub and write it to ``path`` (one token a line)."""
    data = tf.data.Dataset.from_tensor_slices(tf.constant(sentences, dtype=tf.string)).batch(1024)
    tmp = path + ".tmp"
    keras_hub.tokenizers.compute_word_piece_vocabulary(
        data,
        vocabulary_size=tokenizer_spec.vocab_size,
        vocabulary_output_file=tmp,
        lowercase=tokenizer_spec.lowercase,
        strip_accents=tokenizer_spec.strip_accents,
        reserved_tokens=RESERVED_TOKENS,
    )
    os.replace(tmp, path)
    return path


def prune_vocabulary(tokenizer, sentences, min_count):
    """The tokens of ``tokenizer`` that occur at least ``min_count`` times when it tokenizes
    ``sentences``, plus the special tokens, in the tokenizer's order.

    WordPiece matches the longest piece first, so a pruned vocabulary tokenizes these
    sentences exactly as the full one does.
    """
    vocabulary = tokenizer.get_vocabulary()
    ids = tokenize_to_ragged(tokenizer, sentences).flat_values.numpy()
    counts = np.bincount(ids, minlength=len(vocabulary))
    special = {tokenizer.token_to_id(t) for t in RESERVED_TOKENS if t in vocabulary}
    return [token for i, token in enumerate(vocabulary) if counts[i] >= min_count or i in special]


def make_tokenizer(vocabulary_path, lowercase=False, strip_accents=False):
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary_path,
        lowercase=lowercase,
        strip_accents=strip_accents,
        oov_token=UNK,
    )


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    pad: int
    bos: int
    eos: int
    unk: int

    @classmethod
    def of(cls, tokenizer):
        return cls(*(tokenizer.token_to_id(t) for t in (PAD, BOS, EOS, UNK)))


# In-graph detokenisation: WordPiece splits punctuation off words; glue it back the way
# the references are written so sacreBLEU sees ordinary text. Works inside a SavedModel.
_DETOKENIZE_RULES = (
    (r"\s+([.,!?;:%)\]}])", r"\1"),
    (r"([(\[{$])\s+", r"\1"),
    (r"(\w)\s+'\s*(s|t|re|ve|ll|d|m)\b", r"\1'\2"),
    (r"(\w)\s+'\s+(\w)", r"\1'\2"),
    (r"(\w)\s+-\s+(\w)", r"\1-\2"),
    (r"\s+", " "),
)


def detokenize(tokenizer, token_ids, special_ids):
    """Token ids ``[batch, length]`` (stopping at EOS) to a ``tf.string`` batch."""
    token_ids = tf.convert_to_tensor(token_ids)
    is_eos = tf.cast(tf.equal(token_ids, special_ids.eos), tf.int32)
    keep = tf.equal(tf.cumsum(is_eos, axis=1, exclusive=False), 0)
    keep &= tf.not_equal(token_ids, special_ids.pad) & tf.not_equal(token_ids, special_ids.bos)
    ragged = tf.ragged.boolean_mask(token_ids, keep)
    text = tokenizer.detokenize(ragged)
    for pattern, rewrite in _DETOKENIZE_RULES:
        text = tf.strings.regex_replace(text, pattern, rewrite)
    return tf.strings.strip(text)


# ----------------------------------------------------------------------------- pipelines


def tokenize_to_ragged(tokenizer, sentences):
    """Token ids of ``sentences`` as a ``tf.RaggedTensor`` (keras-hub returns lists in eager)."""
    strings = tf.constant(sentences, dtype=tf.string) if len(sentences) else tf.zeros([0], tf.string)
    return tf.function(tokenizer.tokenize)(strings)


@dataclasses.dataclass
class TokenizedCorpus:
    source_ids: tf.RaggedTensor
    target_ids: tf.RaggedTensor
    kept: np.ndarray  # indices into the original corpus

    def __len__(self):
        return int(self.source_ids.nrows())


def tokenize_corpus(corpus, source_tokenizer, target_tokenizer, max_tokens, name="corpus"):
    """Tokenize both sides; drop (and count) empty pairs and pairs longer than ``max_tokens``.

    A target needs one extra position for BOS/EOS, so its limit is ``max_tokens - 1``.
    """
    src = tokenize_to_ragged(source_tokenizer, corpus.source)
    tgt = tokenize_to_ragged(target_tokenizer, corpus.target)
    src_len = src.row_lengths().numpy()
    tgt_len = tgt.row_lengths().numpy()
    empty = (src_len == 0) | (tgt_len == 0)
    too_long = ~empty & ((src_len > max_tokens) | (tgt_len + 1 > max_tokens))
    kept = np.flatnonzero(~(empty | too_long))
    if empty.any() or too_long.any():
        log.info(
            "%s: dropped %d empty and %d over-long (> %d tokens) pairs of %d (%s)",
            name, int(empty.sum()), int(too_long.sum()), max_tokens, len(corpus), corpus.origin,
        )
    return TokenizedCorpus(tf.gather(src, kept), tf.gather(tgt, kept), kept)


def bucket_boundaries(max_tokens, bucket_width):
    """Upper bounds (exclusive) of the length buckets, the last one covering ``max_tokens``."""
    return list(range(bucket_width + 1, max_tokens + 1, bucket_width)) + [max_tokens + 2]


def _bucket_batch_sizes(boundaries, batch_tokens):
    # every element of a bucket is shorter than its boundary, so a batch padded to its
    # longest element holds at most batch_size * (boundary - 1) tokens per side
    return [max(1, batch_tokens // (b - 1)) for b in boundaries] + [1]


def seq2seq_dataset(tokenized, special_ids, batch_tokens, max_tokens, bucket_width,
                    shuffle=False, seed=None, shuffle_buffer=100000, repeat=False,
                    extra=None):
    """Bucketed batches ``({"source_ids", "decoder_ids"}, target_ids)``.

    ``decoder_ids`` is ``[BOS] + y`` and ``target_ids`` is ``y + [EOS]``. ``extra`` maps names
    to per-example ragged tensors that travel with the example (padded like the target) and
    are added to the input dict (used for cached teacher soft targets).
    """
    columns = {"source": tokenized.source_ids, "target": tokenized.target_ids}
    columns.update(extra or {})
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, len(tokenized)), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    bos = tf.constant([special_ids.bos], tf.int32)
    eos = tf.constant([special_ids.eos], tf.int32)

    def to_example(item):
        out = dict(item)
        target = tf.cast(item["target"], tf.int32)
        out["source"] = tf.cast(item["source"], tf.int32)
        out["decoder"] = tf.concat([bos, target], 0)
        out["target"] = tf.concat([target, eos], 0)
        return out

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    boundaries = bucket_boundaries(max_tokens, bucket_width)
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda x: tf.maximum(tf.shape(x["source"])[0], tf.shape(x["target"])[0]),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=_bucket_batch_sizes(boundaries, batch_tokens),
        padding_values={k: tf.constant(special_ids.pad, v.dtype) if v.dtype.is_integer
                        else tf.constant(0, v.dtype) for k, v in ds.element_spec.items()},
    )

    extra_names = list(extra or {})

    def to_model_inputs(batch):
        inputs = {"source_ids": batch["source"], "decoder_ids": batch["decoder"]}
        inputs.update({name: batch[name] for name in extra_names})
        return inputs, batch["target"]

    ds = ds.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
