"""Language-model text: lines read from text files or TFDS, one token stream, blocks.

Each line (a paragraph, a heading or an empty line of WikiText) becomes its BPE tokens followed
by ``<|endoftext|>``, the end-of-line mark (WikiText's ``<eos>``); the split is one stream
``<|endoftext|> line_1 <|endoftext|> line_2 <|endoftext|> ...`` cut into blocks of
``block_size + 1`` tokens that overlap by one, so every token after the first is predicted
exactly once, from the tokens of its own block before it. Block ``i`` (its example id) reads
``stream[i * block_size : (i + 1) * block_size + 1]``: inputs are its first ``block_size``
tokens, labels the next ones (``-1`` past the end of the stream).

Perplexity is reported per token (``exp`` of the mean NLL of the BPE tokens) and per word:
``exp`` of the same total NLL over the whitespace-separated words plus one end of line per line,
the count WikiText and PTB perplexities are published with (245,569 for WikiText-2 test).
"""

import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from tfkd import data as data_lib
from tfkd.errors import DataError

log = logging.getLogger("tfkd")

NO_LABEL = -1


@dataclasses.dataclass(frozen=True)
class LanguageModelText:
    """The lines of a split (empty lines kept) and where they came from."""

    lines: list
    origin: str
    # the lines' word count when they were detokenized from the published ones (which count)
    published_words: int | None = None

    @property
    def words(self):
        """Whitespace-separated words plus one end of line per line (the published count: of
        the lines before ``data.detokenize``)."""
        if self.published_words is not None:
            return self.published_words
        return sum(len(line.split()) for line in self.lines) + len(self.lines)


# (pattern, replacement) in order: WikiText's tokenization undone as GPT-2's evaluation did
# (Radford et al. 2019, section 3.1, "invertible de-tokenizers"; the rules of Megatron-LM's
# tasks/zeroshot_gpt/detokenizer.py, which reproduce it)
WIKITEXT_RULES = (
    (r"s '", "s'"),
    (r" @-@ ", "-"),
    (r" @,@ ", ","),
    (r" @\.@ ", "."),
    (r" : ", ": "),
    (r" ; ", "; "),
    (r" \. ", ". "),
    (r" ! ", "! "),
    (r" \? ", "? "),
    (r" , ", ", "),
    (r"\(\s*([^\)]*?)\s*\)", r"(\1)"),
    (r"\[\s*([^\]]*?)\s*\]", r"[\1]"),
    (r"{\s*([^}]*?)\s*}", r"{\1}"),
    (r"\"\s*([^\"]*?)\s*\"", r'"\1"'),
    (r"'\s*([^']*?)\s*'", r"'\1'"),
    (r"= = = =", "===="),
    (r"= = =", "==="),
    (r"= =", "=="),
    (" \u00b0 ", "\u00b0"),
    (r" N ", " 1 "),
    (r" 's", "'s"),
)


def wikitext_detokenize(line):
    """One WikiText line as plain text (``data.detokenize: wikitext``): `` @-@ `` back to
    ``-``, no space before punctuation or inside brackets and quotes, ``'s`` attached."""
    import re

    line = f" {line} "  # as the published lines are: a space before and after
    for pattern, replacement in WIKITEXT_RULES:
        line = re.sub(pattern, replacement, line)
    return line.strip()


DETOKENIZERS = {"wikitext": wikitext_detokenize}


def detokenized(text, name):
    """``text`` with each line detokenized by ``DETOKENIZERS[name]`` (``"none"``: as it is);
    its word count stays the published lines'."""
    if name == "none":
        return text
    return dataclasses.replace(
        text, lines=[DETOKENIZERS[name](line) for line in text.lines], published_words=text.words
    )


def read_split(data, split):
    """The :class:`LanguageModelText` of ``split`` (``train``, ``valid`` or ``test``)."""
    limit = getattr(data, f"{split}_limit")
    if data.source == "tfds":
        import tensorflow_datasets as tfds

        name, tfds_split = data.tfds, getattr(data, f"{split}_split")
        if limit:
            tfds_split = f"{tfds_split}[:{limit}]"
        try:
            dataset = tfds.load(name, split=tfds_split, data_dir=data.data_dir, download=False)
        except Exception as e:  # TFDS raises many types; the message is what matters
            raise DataError(f"data.tfds: {name} split {tfds_split}: cannot load: {str(e).splitlines()[0]}") from None
        if data.text_feature not in dataset.element_spec:
            raise DataError(
                f"data.text_feature: tfds {name} has no feature {data.text_feature!r} "
                f"(features: {', '.join(dataset.element_spec)})"
            )
        lines = []
        for example in tfds.as_numpy(dataset):
            lines += [line.strip() for line in example[data.text_feature].decode("utf-8").split("\n")]
        return detokenized(LanguageModelText(lines, f"tfds:{name}/{tfds_split}"), data.detokenize)
    path = os.path.join(data.dir, getattr(data, f"{split}_file"))
    raw = data_lib.read_raw_lines(path)
    if limit:
        raw = raw[:limit]
    lines = [data_lib.decode_line(line, path, number).strip() for number, line in enumerate(raw, start=1)]
    if not any(lines):
        raise DataError(f"{path}: no text (every line is empty)")
    return detokenized(LanguageModelText(lines, path), data.detokenize)


def token_stream(tokenizer, lines, end_id, chunk=20000):
    """``int32 [N]``: ``<|endoftext|>`` then each line's tokens followed by ``<|endoftext|>``."""
    parts = [np.array([end_id], np.int32)]
    for start in range(0, len(lines), chunk):
        ids = data_lib.tokenize_to_ragged(tokenizer, lines[start : start + chunk])
        ends = tf.fill([ids.nrows(), 1], end_id)
        framed = tf.concat([tf.cast(ids, tf.int32), tf.RaggedTensor.from_tensor(ends)], axis=1)
        parts.append(framed.flat_values.numpy())
    return np.concatenate(parts)


def blocks(stream, block_size):
    """``(inputs, labels)``, ``int32 [num_blocks, block_size]``: the stream cut into blocks
    overlapping by one token; inputs padded with 0 and labels with ``-1`` past its end."""
    predicted = len(stream) - 1
    count = max(-(-predicted // block_size), 0)
    # block i reads stream[i * block_size : (i + 1) * block_size + 1]: inputs are the stream
    # without its last token, labels without its first, both cut into rows
    inputs = np.zeros([count * block_size], np.int32)
    labels = np.full([count * block_size], NO_LABEL, np.int32)
    inputs[:predicted] = stream[:-1]
    labels[:predicted] = stream[1:]
    return inputs.reshape(count, block_size), labels.reshape(count, block_size)


def model_inputs(token_ids, labels):
    """The student's inputs of a block batch: padding is where there is no label."""
    return {"token_ids": token_ids, "padding_mask": tf.not_equal(labels, NO_LABEL)}


def block_dataset(inputs, labels, batch_size, training, seed=None, shuffle_buffer=100000, columns=None):
    """Batches ``({"token_ids", "padding_mask"}, labels)`` of blocks; training batches are
    shuffled (seeded, a new order every pass) and repeat; ``columns`` (a method's per-block
    columns keyed by ``id``) are added to the inputs."""
    ids = np.arange(len(inputs), dtype=np.int64)
    ds = tf.data.Dataset.from_tensor_slices({"id": ids, "token_ids": inputs, "labels": labels})
    if columns is not None:
        table = data_lib.ExampleTable(ids, {"token_ids": inputs, "labels": labels}, what="block")
        ds = columns.map(table.join)
    elif training:
        ds = ds.shuffle(min(len(inputs), shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    if training:
        ds = ds.repeat()

    def split(batch):
        extra = {k: v for k, v in batch.items() if k not in ("id", "token_ids", "labels")}
        return {**model_inputs(batch["token_ids"], batch["labels"]), **extra}, batch["labels"]

    return (
        ds.batch(batch_size, drop_remainder=False)
        .map(split, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
