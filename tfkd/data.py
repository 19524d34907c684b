"""Text helpers every task shares: reading text files, tokenizers, bucketing.

Tokenizers are keras-hub's, applied in-graph (so exports take raw text): WordPiece with a
vocabulary learned from the training data by ``keras_hub.tokenizers.compute_word_piece_vocabulary``
or the teacher checkpoint's own vocabulary, or SentencePiece (unigram or BPE) learned by the
``sentencepiece`` library. Learned vocabularies are saved into the run directory. Training
batches are bucketed by length under a token budget (``batch_tokens`` padded tokens).
"""

import dataclasses
import hashlib
import logging
import os
import weakref

import keras_hub
import numpy as np
import tensorflow as tf

from tfkd.errors import DataError, StageError, first_line
from tfkd.text_files import decode_line, read_raw_lines

log = logging.getLogger("tfkd")

PAD, UNK, BOS, EOS, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
RESERVED_TOKENS = [PAD, UNK, BOS, EOS, MASK]


# ----------------------------------------------------------------------------- corpora


def read_lines(path):
    return [decode_line(line, path, number).strip() for number, line in enumerate(read_raw_lines(path), start=1)]


def read_text_source(source, limit=None, key="text"):
    """The non-empty lines of a text source, stripped: ``(lines, origin)``.

    ``source`` is a text file (one sentence or paragraph a line) or ``tfds:NAME[:SPLIT]`` (a
    TFDS dataset already prepared in TFDS's data folder; split ``train`` by default; its
    ``text`` feature, else its only string feature). ``key`` names the spec key in errors.
    """
    if source.startswith("tfds:"):
        import tensorflow_datasets as tfds

        name, _, split = source[len("tfds:") :].partition(":")
        split = split or "train"
        if limit:
            split = f"{split}[:{limit}]"
        try:
            dataset = tfds.load(name, split=split, download=False)
        except Exception as e:  # TFDS raises many types; the message is what matters
            raise DataError(f"{key}: tfds {name} split {split}: cannot load: {str(e).splitlines()[0]}") from None
        strings = [k for k, v in dataset.element_spec.items() if v.dtype == tf.string]
        feature = "text" if "text" in strings else (strings[0] if len(strings) == 1 else None)
        if feature is None:
            raise DataError(f"{key}: tfds {name} has no text feature (string features: {strings})")
        lines = [x[feature].decode("utf-8").strip() for x in tfds.as_numpy(dataset)]
        origin = f"tfds:{name}/{split}"
    else:
        lines = read_lines(source)
        if limit:
            lines = lines[:limit]
        origin = source
    return [line for line in lines if line], origin


def chunk_rows(ids, size):
    """Cut each row of a ragged ``[N, None]`` batch into consecutive pieces of at most
    ``size`` tokens (a paragraph longer than a model's input becomes several inputs)."""
    lengths = ids.row_lengths().numpy()
    pieces = []
    for length in lengths:
        full, rest = divmod(int(length), size)
        pieces.extend([size] * full + ([rest] if rest else []))
    return tf.RaggedTensor.from_row_lengths(ids.flat_values, np.array(pieces, np.int64))


# ----------------------------------------------------------------------------- tokenizers


SENTENCEPIECE_SUFFIX = ".spm"  # a SentencePiece model beside its ``.vocab`` listing


def learn_vocabulary(sentences, tokenizer_spec, path):
    """Learn a vocabulary for ``tokenizer_spec`` and write it to ``path`` (one token a line):
    ``kind: learned``, WordPiece with keras-hub; ``kind: sentencepiece``, a SentencePiece model
    (``model_type`` unigram or BPE, exactly ``vocab_size`` pieces) with the ``sentencepiece``
    library, its model beside ``path`` (:data:`SENTENCEPIECE_SUFFIX`). Returns the settings
    :func:`make_tokenizer` needs besides the spec's ``lowercase`` and ``strip_accents``."""
    if tokenizer_spec.kind == "sentencepiece":
        learn_sentencepiece(sentences, tokenizer_spec, path)
        return {"kind": "sentencepiece"}
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
    with open(path, encoding="utf-8") as f:
        size = sum(1 for _ in f)
    if size < tokenizer_spec.vocab_size:
        # keras-hub's learner stops when the corpus has no more pieces to add at its settings
        log.warning(
            "vocab: asked for %d WordPiece tokens, learned %d (the training text has no more at the "
            "learner's settings); the run uses %d",
            tokenizer_spec.vocab_size,
            size,
            size,
        )
    return {}


def sentencepiece_model_path(vocabulary_path):
    return os.path.splitext(vocabulary_path)[0] + SENTENCEPIECE_SUFFIX


def learn_sentencepiece(sentences, tokenizer_spec, path):
    """A SentencePiece model of exactly ``vocab_size`` pieces; the reserved tokens keep the ids
    they have in a WordPiece vocabulary (``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2 as BOS, ``[SEP]`` 3
    as EOS, ``[MASK]`` 4), then the 256 byte pieces that spell any character the training text
    lacks (byte fallback: no input becomes ``[UNK]``, and detokenization gives it back).
    ``lowercase`` folds case in the model's own normalisation."""
    import io

    import sentencepiece

    model = io.BytesIO()
    lines = [s for s in sentences if s.strip()]
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            vocab_size=tokenizer_spec.vocab_size,
            model_type=tokenizer_spec.model_type,
            character_coverage=1.0,
            input_sentence_size=0,
            pad_id=0,
            pad_piece=PAD,
            unk_id=1,
            unk_piece=UNK,
            bos_id=2,
            bos_piece=BOS,
            eos_id=3,
            eos_piece=EOS,
            user_defined_symbols=[MASK],
            hard_vocab_limit=True,
            num_threads=os.cpu_count() or 1,
            byte_fallback=True,  # a character never seen in training becomes its UTF-8 bytes, not [UNK]
            normalization_rule_name="nmt_nfkc_cf" if tokenizer_spec.lowercase else "nmt_nfkc",
            minloglevel=2,
        )
    except RuntimeError as error:  # e.g. a vocab_size the text cannot fill
        raise StageError(
            f"vocab: SentencePiece ({tokenizer_spec.model_type}) could not learn "
            f"{tokenizer_spec.vocab_size} pieces from {len(lines)} sentences: "
            f"{str(error).strip().splitlines()[-1]}"
        ) from None
    processor = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    assert [processor.id_to_piece(i) for i in range(len(RESERVED_TOKENS))] == RESERVED_TOKENS
    target = sentencepiece_model_path(path)
    with open(target + ".tmp", "wb") as f:
        f.write(model.getvalue())
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(processor.id_to_piece(i) for i in range(processor.get_piece_size())) + "\n")
    os.replace(target + ".tmp", target)
    os.replace(path + ".tmp", path)


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


def make_tokenizer(vocabulary_path, lowercase=False, strip_accents=False, kind="wordpiece"):
    """The keras-hub tokenizer of a vocab stage's file: WordPiece, or with ``kind``
    ``"sentencepiece"`` the SentencePiece model beside it (its normalisation is in the model)."""
    path = sentencepiece_model_path(vocabulary_path) if kind == "sentencepiece" else vocabulary_path
    try:
        if kind == "sentencepiece":
            with open(path, "rb") as f:
                return keras_hub.tokenizers.SentencePieceTokenizer(proto=f.read())
        return keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=vocabulary_path,
            lowercase=lowercase,
            strip_accents=strip_accents,
            oov_token=UNK,
        )
    except (OSError, ValueError, RuntimeError, tf.errors.OpError) as e:  # empty, cut, not a vocabulary
        raise DataError(
            f"{path}: not a vocabulary tfkd can read ({first_line(e)}); the vocab stage writes it: delete "
            f"{os.path.dirname(path) or '.'} and run the spec again to learn it anew"
        ) from None


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    pad: int
    bos: int
    eos: int
    unk: int

    @classmethod
    def of(cls, tokenizer):
        return cls(*(tokenizer.token_to_id(t) for t in (PAD, BOS, EOS, UNK)))


def vocabulary_sha256(tokenizer):
    """A digest of a tokenizer's words in id order: two tokenizers with the same one give the
    same ids the same meaning (an export records its target side's)."""
    return hashlib.sha256("\n".join(tokenizer.get_vocabulary()).encode("utf-8")).hexdigest()


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
    if isinstance(tokenizer, keras_hub.tokenizers.SentencePieceTokenizer):
        return text  # SentencePiece keeps the spaces: its detokenization is exact
    for pattern, rewrite in _DETOKENIZE_RULES:
        text = tf.strings.regex_replace(text, pattern, rewrite)
    return tf.strings.strip(text)


# ----------------------------------------------------------------------------- pipelines


_TOKENIZE_GRAPHS = weakref.WeakKeyDictionary()  # tokenizer -> its tokenize, traced once


def tokenize_to_ragged(tokenizer, sentences):
    """Token ids of ``sentences`` as a ``tf.RaggedTensor`` (keras-hub returns lists in eager)."""
    strings = tf.constant(sentences, dtype=tf.string) if len(sentences) else tf.zeros([0], tf.string)
    if tokenizer not in _TOKENIZE_GRAPHS:
        _TOKENIZE_GRAPHS[tokenizer] = tf.function(
            tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)]
        )
    return _TOKENIZE_GRAPHS[tokenizer](tf.reshape(strings, [-1]))


class ExampleTable:
    """Per-example tensors of a split (``columns``: name -> a tensor or ragged tensor with one
    row per example), looked up by example id inside a tf.data pipeline; ``ids`` are the
    examples' ids in row order (ids of dropped examples are absent); ``what`` names an example
    in the error an unknown id raises."""

    def __init__(self, ids, columns, what="training example"):
        ids = np.asarray(ids, np.int64)
        size = int(ids.max()) + 1 if len(ids) else 0
        row_of = np.full(size, -1, np.int64)
        row_of[ids] = np.arange(len(ids))
        self.row_of = tf.constant(row_of)
        self.columns = dict(columns)
        self.what = what

    def join(self, item):
        """``item`` (a dict with ``"id"`` and extra columns) without ``"id"``, plus the
        example's own columns; an unknown id fails the pipeline with an assertion naming it."""
        example_id = tf.cast(item["id"], tf.int64)
        size = tf.cast(tf.size(self.row_of), tf.int64)
        row = tf.gather(self.row_of, tf.clip_by_value(example_id, 0, tf.maximum(size - 1, 0)))
        known = tf.logical_and(tf.logical_and(example_id >= 0, example_id < size), row >= 0)
        check = tf.debugging.Assert(known, ["example id", example_id, f"has no kept {self.what}"])
        with tf.control_dependencies([check]):
            row = tf.identity(row)
        out = {k: v for k, v in item.items() if k != "id"}
        out.update({name: values[row] for name, values in self.columns.items()})
        return out


def example_stream(
    examples, size, columns=None, join=None, shuffle=False, seed=None, shuffle_buffer=100000, repeat=False
):
    """The per-example dicts a batcher reads, and the names of the method's extra columns.

    Without ``columns``: ``examples`` (a dict of per-example tensors, ``size`` of them),
    shuffled with ``seed`` when ``shuffle``. With ``columns`` (a dataset of dicts with an
    example ``"id"`` and extra per-example tensors, a teacher cache streamed from disk, say):
    the examples are read in its order (it does its own shuffling, within its own memory bound)
    and ``join(item)`` adds the example's own tensors to each. ``repeat`` repeats either.
    """
    if columns is None:
        ds = tf.data.Dataset.from_tensor_slices(examples)
        extra_names = []
        if shuffle:
            ds = ds.shuffle(min(shuffle_buffer, max(size, 1)), seed=seed, reshuffle_each_iteration=True)
    else:
        ds = columns
        extra_names = [k for k in columns.element_spec if k != "id"]
    if repeat:
        ds = ds.repeat()
    if columns is not None:
        ds = ds.map(join, num_parallel_calls=tf.data.AUTOTUNE)
    return ds, extra_names


def without_autotuning(dataset):
    """``dataset`` with tf.data's autotuning off: its ``AUTOTUNE`` parallel calls and prefetch
    buffers take tf.data's fixed defaults (the machine's cores; a buffer that grows by itself).

    An autotuned iterator runs a model thread that sleeps longer and longer (up to a minute)
    between optimisations, and deleting the iterator waits for that thread to wake. Keras'
    ``fit`` deletes the last validation pass's iterator when the next validation begins: that
    cost 20-50 s at most validations of a training stage on two cores, against 2 s for the pass
    itself. What a pipeline yields, and in which order, does not depend on autotuning."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def bucketed_batches(ds, length, max_tokens, bucket_width, batch_tokens, padding_values, pad_to_bucket=False):
    """``ds`` batched by length (``length(example)``) under a token budget: buckets of
    ``bucket_width`` up to ``max_tokens``, each batch padded to its longest element with
    ``padding_values`` ({name: scalar}) and holding at most ``batch_tokens`` padded tokens.

    ``pad_to_bucket`` (a task passes it when its steps are XLA-compiled:
    :func:`tfkd.xla.resolve_jit_compile` of its spec's ``train.jit_compile``): every batch padded
    to its bucket's boundary instead, so a repeated stream has one batch shape per bucket and a
    compiled step that many programs."""
    boundaries = bucket_boundaries(max_tokens, bucket_width)
    if pad_to_bucket:
        log.info(
            "batches padded to %d bucket lengths (%s) for XLA",
            len(boundaries),
            ", ".join(str(b - 1) for b in boundaries),
        )
    return ds.bucket_by_sequence_length(
        element_length_func=length,
        bucket_boundaries=boundaries,
        bucket_batch_sizes=bucket_batch_sizes(boundaries, batch_tokens),
        padding_values=padding_values,
        pad_to_bucket_boundary=bool(pad_to_bucket),
    )


def bucket_boundaries(max_tokens, bucket_width):
    """Upper bounds (exclusive) of the length buckets, the last one covering ``max_tokens``."""
    return list(range(bucket_width + 1, max_tokens + 1, bucket_width)) + [max_tokens + 2]


def bucket_batch_sizes(boundaries, batch_tokens):
    """Batch size per bucket so a batch padded to its longest element holds at most
    ``batch_tokens`` tokens: every element of a bucket is shorter than its boundary."""
    return [max(1, batch_tokens // (b - 1)) for b in boundaries] + [1]
