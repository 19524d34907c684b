"""Translation data: aligned corpora, tokenization of both sides, bucketed batches.

Corpora are aligned text files (``{dir}/{split}.{lang}``) or TFDS translation datasets. An
example's ``id`` is its line in the split as read (0-based), before empty and over-long pairs
are dropped; a method's extra columns (the soft-target cache) are keyed by it.
"""

import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from tfkd.data import ExampleTable, bucketed_batches, example_stream, read_lines, tokenize_to_ragged
from tfkd.errors import DataError

log = logging.getLogger("tfkd")


@dataclasses.dataclass
class ParallelCorpus:
    """Aligned source/target sentences of one split, with where they came from."""

    source: list
    target: list
    origin: str

    def __len__(self):
        return len(self.source)


def read_text_split(directory, split, src_lang, tgt_lang, limit=None):
    """Read ``{directory}/{split}.{src_lang}`` and ``.{tgt_lang}``; they must have equal lines."""
    src_path = os.path.join(directory, f"{split}.{src_lang}")
    tgt_path = os.path.join(directory, f"{split}.{tgt_lang}")
    source, target = read_lines(src_path), read_lines(tgt_path)
    if len(source) != len(target):
        raise DataError(f"misaligned corpus: {src_path} has {len(source)} lines but {tgt_path} has {len(target)} lines")
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
            f"tfds {name} split {tfds_split} (data_dir={data_dir}): cannot load: {str(e).splitlines()[0]}"
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
        corpus = read_text_split(data_spec.dir, split, data_spec.src_lang, data_spec.tgt_lang, limit)
    else:
        corpus = read_tfds_split(
            data_spec.tfds, split, data_spec.src_lang, data_spec.tgt_lang, data_spec.data_dir, limit
        )
    if not len(corpus):
        raise DataError(
            f"{corpus.origin}: no sentence pairs in the {split_key} split (data.{split_key}_split: {split})"
        )
    return corpus


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
    if len(corpus) and not len(kept):
        raise DataError(
            f"{corpus.origin}: all {len(corpus)} pairs are empty or longer than data.max_tokens "
            f"({max_tokens} tokens): nothing left to use"
        )
    if empty.any() or too_long.any():
        log.info(
            "%s: dropped %d empty and %d over-long (> %d tokens) pairs of %d (%s)",
            name,
            int(empty.sum()),
            int(too_long.sum()),
            max_tokens,
            len(corpus),
            corpus.origin,
        )
    return TokenizedCorpus(tf.gather(src, kept), tf.gather(tgt, kept), kept)


def pair_table(tokenized):
    """The split's kept pairs (``source``, ``target``) by example id: a
    :class:`tfkd.data.ExampleTable`."""
    return ExampleTable(
        tokenized.kept, {"source": tokenized.source_ids, "target": tokenized.target_ids}, what="training pair"
    )


def seq2seq_dataset(
    tokenized,
    special_ids,
    batch_tokens,
    max_tokens,
    bucket_width,
    shuffle=False,
    seed=None,
    shuffle_buffer=100000,
    repeat=False,
    columns=None,
    pad_to_bucket=False,
):
    """Bucketed batches ``({"source_ids", "decoder_ids", **extra}, target_ids)``.

    ``decoder_ids`` is ``[BOS] + y`` and ``target_ids`` is ``y + [EOS]``. ``columns`` is a
    dataset of dicts, each with an example ``"id"`` and extra per-example tensors (padded like
    the target, added to the inputs; a teacher cache streamed from disk): the pairs are then
    read in its order (it does its own shuffling, within its own memory bound), looked up by id.
    ``pad_to_bucket``: batches padded to their bucket's boundary, for XLA-compiled steps
    (:func:`tfkd.data.bucketed_batches`).
    """
    ds, extra_names = example_stream(
        {"source": tokenized.source_ids, "target": tokenized.target_ids},
        len(tokenized),
        columns,
        pair_table(tokenized).join if columns else None,
        shuffle=shuffle,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        repeat=repeat,
    )

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
    ds = bucketed_batches(
        ds,
        lambda x: tf.maximum(tf.shape(x["source"])[0], tf.shape(x["target"])[0]),
        max_tokens,
        bucket_width,
        batch_tokens,
        {
            k: tf.constant(special_ids.pad, v.dtype) if v.dtype.is_integer else tf.constant(0, v.dtype)
            for k, v in ds.element_spec.items()
        },
        pad_to_bucket=pad_to_bucket,
    )

    def to_model_inputs(batch):
        inputs = {"source_ids": batch["source"], "decoder_ids": batch["decoder"]}
        inputs.update({name: batch[name] for name in extra_names})
        return inputs, batch["target"]

    ds = ds.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
