"""Classification data: labelled texts from TSV files or TFDS, [CLS] text [SEP] framing,
bucketed batches.

A split is a TSV file with a header naming its columns (GLUE's layout: ``sentence<TAB>label``;
no CSV quoting, fields are split on tabs) or a TFDS dataset (``glue/sst2``). An example's ``id``
is its row in the split as read (0-based, the header not counted): a method's extra columns (a
teacher's probabilities) are keyed by it. Label names are strings (TFDS class ids become
``"0"``, ``"1"``...); an example without a label (GLUE's test split) has label id -1.
"""

import dataclasses
import logging
import os

import numpy as np
import tensorflow as tf

from tfkd.data import ExampleTable, bucketed_batches, decode_line, example_stream, read_raw_lines, tokenize_to_ragged
from tfkd.errors import DataError

log = logging.getLogger("tfkd")

NO_LABEL = -1


# ----------------------------------------------------------------------------- reading


@dataclasses.dataclass
class LabeledTexts:
    """The rows of a split as read: texts and their label names (``None``: no label), with
    where each row came from (for errors)."""

    texts: list
    labels: list
    origin: str
    # the file line of row 0 (rows are consecutive lines); None for TFDS
    first_line: int | None = None

    def __len__(self):
        return len(self.texts)

    def where(self, row):
        """``path:line`` of a TSV row, ``tfds:NAME/SPLIT: example N`` of a TFDS one."""
        if self.first_line is None:
            return f"{self.origin}: example {row}"
        return f"{self.origin}:{self.first_line + row}"


@dataclasses.dataclass
class ClassificationCorpus:
    """The texts of one split and their label ids (``-1``: no label), with where they came from."""

    texts: list
    labels: np.ndarray  # int32 label ids
    origin: str

    def __len__(self):
        return len(self.texts)

    @property
    def labeled(self):
        """Whether the split has labels (GLUE's test split has none)."""
        return bool((self.labels >= 0).any())


def _decode(line, path, number):
    return decode_line(line, path, number).rstrip("\r")


def read_tsv(path, text_column="sentence", label_column="label", limit=None, labels_required=True):
    """The rows of a TSV file with a header: :class:`LabeledTexts`.

    Columns are found by name in the header. Without ``label_column`` in the header the rows
    have no labels, unless ``labels_required`` (then it is an error). Texts are stripped (GLUE's
    have a trailing space). Every problem is a :class:`DataError` naming ``path:line``.
    """
    raw = read_raw_lines(path)
    if not raw:
        raise DataError(
            f"{path}:1: empty file; expected a header line naming the columns "
            f"({text_column}<TAB>{label_column}) and a row per example"
        )
    header = [name.strip() for name in _decode(raw[0], path, 1).split("\t")]
    if text_column not in header:
        raise DataError(f"{path}:1: no column {text_column!r} in the header; columns: {', '.join(header)}")
    text_index = header.index(text_column)
    label_index = header.index(label_column) if label_column in header else None
    if label_index is None and labels_required:
        raise DataError(f"{path}:1: no column {label_column!r} in the header; columns: {', '.join(header)}")
    rows = raw[1:]
    if not rows:
        raise DataError(f"{path}:1: a header but no examples")
    if limit:
        rows = rows[:limit]
    texts, labels = [], []
    for number, row in enumerate(rows, start=2):
        fields = _decode(row, path, number).split("\t")
        if len(fields) != len(header):
            raise DataError(
                f"{path}:{number}: expected {len(header)} tab-separated fields ({', '.join(header)}), "
                f"found {len(fields)}"
            )
        text = fields[text_index].strip()
        if not text:
            raise DataError(f"{path}:{number}: empty {text_column!r}")
        label = None
        if label_index is not None:
            label = fields[label_index].strip()
            if not label:
                raise DataError(f"{path}:{number}: empty {label_column!r}")
        texts.append(text)
        labels.append(label)
    return LabeledTexts(texts, labels, path, first_line=2)


def read_tfds(
    name, split, text_column="sentence", label_column="label", data_dir=None, limit=None, labels_required=True
):
    """A TFDS text classification split (``glue/sst2``): :class:`LabeledTexts`. Integer labels
    become their decimal names; a negative label (GLUE's test split) is no label."""
    import tensorflow_datasets as tfds

    tfds_split = f"{split}[:{limit}]" if limit else split
    try:
        dataset = tfds.load(name, split=tfds_split, data_dir=data_dir, download=False)
    except Exception as e:  # TFDS raises many types; the message is what matters
        raise DataError(
            f"tfds {name} split {tfds_split} (data_dir={data_dir}): cannot load: {str(e).splitlines()[0]}"
        ) from None
    features = sorted(dataset.element_spec)
    origin = f"tfds:{name}/{tfds_split}"
    if text_column not in features:
        raise DataError(f"{origin}: no feature {text_column!r}; features: {', '.join(features)}")
    has_labels = label_column in features
    if not has_labels and labels_required:
        raise DataError(f"{origin}: no feature {label_column!r}; features: {', '.join(features)}")
    corpus = LabeledTexts([], [], origin)
    for row, example in enumerate(tfds.as_numpy(dataset)):
        text = example[text_column]
        text = (text.decode("utf-8") if isinstance(text, bytes) else str(text)).strip()
        if not text:
            raise DataError(f"{corpus.where(row)}: empty {text_column!r}")
        label = None
        if has_labels:
            value = example[label_column]
            if isinstance(value, bytes):
                label = value.decode("utf-8").strip() or None
            elif int(value) >= 0:
                label = str(int(value))
        corpus.texts.append(text)
        corpus.labels.append(label)
    return corpus


def read_rows(data_spec, split_key):
    """The rows of ``train`` / ``valid`` / ``test`` as the spec's data section says; the
    training split must have labels."""
    limit = getattr(data_spec, f"{split_key}_limit")
    required = split_key == "train"
    if data_spec.source == "text":
        path = os.path.join(data_spec.dir, getattr(data_spec, f"{split_key}_file"))
        return read_tsv(path, data_spec.text_column, data_spec.label_column, limit, required)
    return read_tfds(
        data_spec.tfds,
        getattr(data_spec, f"{split_key}_split"),
        data_spec.text_column,
        data_spec.label_column,
        data_spec.data_dir,
        limit,
        required,
    )


def distinct_labels(rows):
    """The label names of ``rows``, sorted (numerically when they are all integers)."""
    names = {label for label in rows.labels if label is not None}
    if all(_is_integer(n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _is_integer(text):
    try:
        int(text)
    except ValueError:
        return False
    return True


def label_ids(rows, label_names, where_names="data.labels"):
    """``int32 [N]``: each row's index in ``label_names`` (``-1`` without a label); a label
    outside them is a :class:`DataError` naming the row."""
    index = {name: i for i, name in enumerate(label_names)}
    ids = np.full(len(rows), NO_LABEL, np.int32)
    for row, label in enumerate(rows.labels):
        if label is None:
            continue
        if label not in index:
            raise DataError(
                f"{rows.where(row)}: label {label!r} is not one of {where_names} ({', '.join(label_names)})"
            )
        ids[row] = index[label]
    return ids


def to_corpus(rows, label_names, where_names="data.labels"):
    return ClassificationCorpus(list(rows.texts), label_ids(rows, label_names, where_names), rows.origin)


# ----------------------------------------------------------------------------- tokens


def frame(token_ids, special_ids, max_tokens):
    """``[CLS] x [SEP]`` of each row of a ragged ``[N, None]`` batch of token ids, ``x``
    truncated so a row has at most ``max_tokens`` tokens. Runs in graph (the export uses it)."""
    token_ids = tf.cast(token_ids, tf.int32)
    body = token_ids[:, : max_tokens - 2]
    rows = body.nrows(out_type=tf.int64)
    cls = tf.RaggedTensor.from_tensor(tf.fill(tf.stack([rows, 1]), tf.constant(special_ids.bos, tf.int32)))
    sep = tf.RaggedTensor.from_tensor(tf.fill(tf.stack([rows, 1]), tf.constant(special_ids.eos, tf.int32)))
    return tf.concat([cls, body, sep], axis=1)


def model_inputs(framed, special_ids):
    """``{"token_ids": int32 [N, L] padded with [PAD], "padding_mask": bool [N, L]}`` of
    framed ragged rows."""
    token_ids = framed.to_tensor(default_value=special_ids.pad)
    lengths = framed.row_lengths()
    padding_mask = tf.sequence_mask(lengths, maxlen=tf.shape(token_ids, out_type=lengths.dtype)[1])
    return {"token_ids": token_ids, "padding_mask": padding_mask}


@dataclasses.dataclass
class TokenizedTexts:
    """Framed token ids (``[CLS] x [SEP]``, ragged ``[N, None]``), label ids and example ids."""

    token_ids: tf.RaggedTensor
    labels: np.ndarray  # int32, -1: no label
    ids: np.ndarray  # int64 example ids

    def __len__(self):
        return len(self.ids)

    def concatenate(self, other):
        return TokenizedTexts(
            tf.concat([self.token_ids, other.token_ids], axis=0),
            np.concatenate([self.labels, other.labels]),
            np.concatenate([self.ids, other.ids]),
        )


def tokenize_texts(texts, labels, tokenizer, special_ids, max_tokens, name="corpus", origin="", first_id=0):
    """Tokenize and frame ``texts``; inputs longer than ``max_tokens`` (with [CLS] and [SEP])
    are truncated, counted and logged. Example ids are ``first_id, first_id + 1, ...``."""
    ragged = tokenize_to_ragged(tokenizer, list(texts))
    lengths = ragged.row_lengths().numpy()
    too_long = int((lengths + 2 > max_tokens).sum())
    if too_long:
        log.info(
            "%s: truncated %d of %d texts longer than %d tokens ([CLS] and [SEP] included)%s",
            name,
            too_long,
            len(texts),
            max_tokens,
            f" ({origin})" if origin else "",
        )
    return TokenizedTexts(
        frame(ragged, special_ids, max_tokens),
        np.asarray(labels, np.int32),
        np.arange(first_id, first_id + len(texts), dtype=np.int64),
    )


def tokenize_corpus(corpus, tokenizer, special_ids, max_tokens, name="corpus"):
    """:func:`tokenize_texts` of a :class:`ClassificationCorpus` (ids are its rows)."""
    return tokenize_texts(corpus.texts, corpus.labels, tokenizer, special_ids, max_tokens, name, corpus.origin)


# ----------------------------------------------------------------------------- batches


def classification_dataset(
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
    """Bucketed batches ``({"token_ids", "padding_mask", **extra}, labels)``.

    ``token_ids`` are int32 ``[B, L]`` (``[CLS] x [SEP]`` padded with ``[PAD]``),
    ``padding_mask`` bool ``[B, L]``, ``labels`` int32 ``[B]`` (``-1``: no label). A batch
    holds at most ``batch_tokens`` padded tokens. ``columns`` is a dataset of dicts, each with
    an example ``"id"`` and fixed-shape per-example tensors (a teacher's probabilities, say),
    added to the inputs: the examples are then read in its order (it does its own shuffling),
    looked up by id. ``pad_to_bucket``: batches padded to their bucket's boundary, for
    XLA-compiled steps (:func:`tfkd.data.bucketed_batches`).
    """
    examples = {"token_ids": tokenized.token_ids, "label": tf.constant(tokenized.labels, tf.int32)}
    join = ExampleTable(tokenized.ids, examples).join if columns is not None else None
    ds, extra_names = example_stream(
        examples,
        len(tokenized),
        columns,
        join,
        shuffle=shuffle,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        repeat=repeat,
    )

    def to_example(item):
        out = dict(item)
        out["token_ids"] = tf.cast(item["token_ids"], tf.int32)
        out["padding_mask"] = tf.ones_like(out["token_ids"], tf.bool)
        return out

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    padding = {
        "token_ids": tf.constant(special_ids.pad, tf.int32),
        "padding_mask": tf.constant(False),
        "label": tf.constant(NO_LABEL, tf.int32),
    }
    ds = bucketed_batches(
        ds,
        lambda x: tf.shape(x["token_ids"])[0],
        max_tokens,
        bucket_width,
        batch_tokens,
        {k: padding.get(k, tf.zeros([], v.dtype)) for k, v in ds.element_spec.items()},
        pad_to_bucket=pad_to_bucket,
    )

    def to_model_inputs(batch):
        inputs = {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}
        inputs.update({name: batch[name] for name in extra_names})
        return inputs, batch["label"]

    ds = ds.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
