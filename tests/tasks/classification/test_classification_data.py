"""Classification data: TSV splits read by column name (SST-2), one-line errors naming
``path:line``, TFDS, [CLS] x [SEP] framing, bucketed batches, unlabeled texts and columns
joined by example id."""

import os
import types

import numpy as np
import pytest
import tensorflow as tf
from helpers import FakeContext

from tfkd import data as data_lib
from tfkd.spec import SpecError, TrainSpec, load_spec
from tfkd.tasks.classification import ClassificationData, ClassificationTask
from tfkd.tasks.classification import data as classification_data
from tfkd.tasks.classification.vocab import ClassificationTokenizers

SST2 = os.path.join(os.environ["TFKD_DATA_DIR"], "sst2")


@pytest.fixture(scope="module")
def sst2():
    if not os.path.exists(os.path.join(SST2, "train.tsv")):
        pytest.fail(f"real data not found at {SST2}; set TFKD_DATA_DIR")
    return SST2


# ----------------------------------------------------------------------------- reading


def test_sst2_train_and_dev_are_read_by_column_name(sst2):
    train = classification_data.read_tsv(os.path.join(sst2, "train.tsv"))
    assert len(train) == 67349
    # the trailing space GLUE leaves before the tab is stripped
    assert train.texts[:2] == ["hide new secretions from the parental units", "contains no wit , only labored gags"]
    assert train.labels[:2] == ["0", "0"]
    assert classification_data.distinct_labels(train) == ["0", "1"]
    assert [train.labels.count("0"), train.labels.count("1")] == [29780, 37569]  # MANIFEST.json's counts
    assert train.where(0) == f"{sst2}/train.tsv:2"  # row 0 is the line after the header
    dev = classification_data.to_corpus(classification_data.read_tsv(os.path.join(sst2, "dev.tsv")), ["0", "1"])
    assert len(dev) == 872 and dev.labeled
    assert dev.texts[0] == "it 's a charming and often affecting journey ."
    assert dev.labels.dtype == np.int32 and dev.labels[:2].tolist() == [1, 0]
    assert np.bincount(dev.labels).tolist() == [428, 444]
    limited = classification_data.read_tsv(os.path.join(sst2, "dev.tsv"), limit=5)
    assert limited.texts == dev.texts[:5]


def test_glue_test_split_has_no_label_column(sst2):
    path = os.path.join(sst2, "test.tsv")
    rows = classification_data.read_tsv(path, labels_required=False)
    assert len(rows) == 1821 and rows.texts[0] == "uneasy mishmash of styles and genres ."
    assert set(rows.labels) == {None}
    corpus = classification_data.to_corpus(rows, ["0", "1"])
    assert not corpus.labeled and set(corpus.labels.tolist()) == {-1}
    # the training split must have labels
    with pytest.raises(data_lib.DataError) as e:
        classification_data.read_tsv(path)
    assert str(e.value) == f"{path}:1: no column 'label' in the header; columns: index, sentence"


def test_read_rows_follows_the_spec(sst2):
    spec = ClassificationData(dir=sst2, valid_limit=3, test_limit=2)
    assert len(classification_data.read_rows(spec, "valid")) == 3
    test = classification_data.read_rows(spec, "test")  # no labels: allowed outside training
    assert len(test) == 2 and test.labels == [None, None]


BAD_FILES = {
    # name: (file bytes, how it is read, the error after "path")
    "missing_column": (b"text\tlabel\nfine\t1\n", None, ":1: no column 'sentence' in the header; columns: text, label"),
    "wrong_field_count": (
        b"sentence\tlabel\ngood\t1\nbad\tplot\t0\n",
        None,
        ":3: expected 2 tab-separated fields (sentence, label), found 3",
    ),
    "missing_field": (
        b"sentence\tlabel\ngood\t1\n\n",
        None,
        ":3: expected 2 tab-separated fields (sentence, label), found 1",
    ),
    "empty_text": (b"sentence\tlabel\ngood\t1\n  \t0\n", None, ":3: empty 'sentence'"),
    "empty_label": (b"sentence\tlabel\ngood\t1\nbad\t \n", None, ":3: empty 'label'"),
    "unknown_label": (
        b"sentence\tlabel\ngood\tpos\nbad\tneg\nso so\tmeh\n",
        ["neg", "pos"],
        ":4: label 'meh' is not one of data.labels (neg, pos)",
    ),
    "invalid_utf8": (
        b"sentence\tlabel\ngood\t1\nbad \xff\xfe\t0\n",
        None,
        ":3: not valid UTF-8 (invalid start byte at byte 4)",
    ),
    "empty_file": (
        b"",
        None,
        ":1: empty file; expected a header line naming the columns (sentence<TAB>label) and a row per example",
    ),
    "header_only": (b"sentence\tlabel\n", None, ":1: a header but no examples"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_is_one_line_naming_path_and_line(tmp_path, case):
    content, labels, message = BAD_FILES[case]
    path = tmp_path / "train.tsv"
    path.write_bytes(content)
    with pytest.raises(data_lib.DataError) as e:
        rows = classification_data.read_tsv(str(path))
        classification_data.to_corpus(rows, labels)
    assert str(e.value) == f"{path}{message}"
    assert "\n" not in str(e.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(data_lib.DataError, match=f"^{tmp_path}/dev.tsv: file not found$"):
        classification_data.read_rows(ClassificationData(dir=str(tmp_path)), "valid")


def test_windows_line_ends_and_column_order(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"label\tid\tsentence\r\n1\t7\tgood fun \r\n0\t8\tdull\r\n")
    rows = classification_data.read_tsv(str(path))
    assert rows.texts == ["good fun", "dull"] and rows.labels == ["1", "0"]


def test_default_labels_sort_numbers_numerically():
    rows = classification_data.LabeledTexts(["a", "b", "c", "d"], ["10", "2", None, "2"], "x")
    assert classification_data.distinct_labels(rows) == ["2", "10"]
    words = classification_data.LabeledTexts(["a", "b"], ["pos", "neg"], "x")
    assert classification_data.distinct_labels(words) == ["neg", "pos"]


# ----------------------------------------------------------------------------- the spec section


SPEC = """\
version: 1
name: clf
task: classification
data:
{data}
student: {{kind: bert_classifier, num_layers: 1, hidden_dim: 16, num_heads: 2, intermediate_dim: 32}}
"""


@pytest.mark.parametrize(
    "data, line, message",
    [
        (
            "  source: text",
            4,
            'data: source "text" needs "dir" (a folder with the TSV files train_file, valid_file, test_file)',
        ),
        ("  source: tfds", 4, 'data: source "tfds" needs "tfds" (a TFDS name such as "glue/sst2")'),
        ("  dir: x\n  labels: [pos, pos]", 6, 'data.labels: expected distinct label names, got ["pos", "pos"]'),
        ("  dir: x\n  labels: [pos]", 6, 'data.labels: expected at least 2 label names, got ["pos"]'),
        ("  dir: x\n  max_tokens: 2", 6, "data.max_tokens: expected a number >= 3, got 2"),
        ("  dir: x\n  tokenizer: {kind: teacher}", 6, 'data.tokenizer.kind: is "teacher" but the spec has no teacher'),
        (
            "  dir: x\n  max_tokens: 600",
            7,
            "student.max_sequence_length: is 512 but data.max_tokens is 600; the student "
            "must read inputs of data.max_tokens tokens",
        ),
    ],
)
def test_spec_errors_are_one_line_with_file_and_line(tmp_path, data, line, message):
    path = tmp_path / "clf.yaml"
    path.write_text(SPEC.format(data=data))
    with pytest.raises(SpecError) as e:
        load_spec(str(path))
    assert str(e.value) == f"{path}:{line}: {message}"


def test_numeric_label_names_are_text(tmp_path):
    path = tmp_path / "clf.yaml"
    path.write_text(SPEC.format(data="  dir: x\n  labels: [0, 1]"))
    assert load_spec(str(path)).data.labels == ["0", "1"]


# ----------------------------------------------------------------------------- TFDS


def test_tfds_classification_source(tmp_path):
    import tensorflow_datasets as tfds

    spec = ClassificationData(source="tfds", tfds="glue/sst2", data_dir=str(tmp_path), valid_limit=7)
    with tfds.testing.mock_data(num_examples=7):
        rows = classification_data.read_rows(spec, "valid")
    assert len(rows) == 7 and rows.origin == "tfds:glue/sst2/validation[:7]"
    assert all(isinstance(t, str) and t for t in rows.texts)
    assert set(rows.labels) <= {"0", "1"}
    assert rows.where(3) == "tfds:glue/sst2/validation[:7]: example 3"


def test_tfds_negative_labels_are_no_labels(tmp_path):
    import tensorflow_datasets as tfds

    def as_dataset(self, *args, **kwargs):  # GLUE's test split: label -1
        return tf.data.Dataset.from_tensor_slices(
            {"sentence": [b"a fine film ", b"dull"], "label": [-1, -1], "idx": [0, 1]}
        )

    spec = ClassificationData(source="tfds", tfds="glue/sst2", data_dir=str(tmp_path))
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        rows = classification_data.read_rows(spec, "test")
    assert rows.texts == ["a fine film", "dull"] and rows.labels == [None, None]


def test_tfds_missing_dataset_is_one_line(tmp_path):
    spec = ClassificationData(source="tfds", tfds="glue/sst2", data_dir=str(tmp_path))
    with pytest.raises(data_lib.DataError) as e:
        classification_data.read_rows(spec, "train")
    assert str(e.value).startswith(f"tfds glue/sst2 split train (data_dir={tmp_path}): cannot load:")
    assert "\n" not in str(e.value)
    unknown = ClassificationData(source="tfds", tfds="no_such_dataset", data_dir=str(tmp_path))
    with pytest.raises(data_lib.DataError) as e:
        classification_data.read_rows(unknown, "train")
    assert str(e.value).startswith(f"tfds no_such_dataset split train (data_dir={tmp_path}): cannot load:")
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- tokens and batches


def test_texts_are_framed_and_truncated(tokenizer, caplog):
    special = data_lib.SpecialIds.of(tokenizer)
    texts = ["the cat sat on the mat .", "a dog", "zzz qqq"]
    with caplog.at_level("INFO", logger="tfkd"):
        tokenized = classification_data.tokenize_texts(
            texts, [1, 0, -1], tokenizer, special, max_tokens=5, name="train", origin="here", first_id=10
        )
    plain = data_lib.tokenize_to_ragged(tokenizer, texts).to_list()
    rows = tokenized.token_ids.to_list()
    assert rows[0] == [special.bos, *plain[0][:3], special.eos]  # truncated to 5 tokens
    assert rows[1] == [special.bos, *plain[1], special.eos]
    assert all(len(r) <= 5 for r in rows)
    assert tokenized.ids.tolist() == [10, 11, 12] and tokenized.labels.tolist() == [1, 0, -1]
    assert "train: truncated 1 of 3 texts longer than 5 tokens ([CLS] and [SEP] included) (here)" in caplog.text
    # an empty text is [CLS] [SEP]
    empty = classification_data.tokenize_texts([""], [0], tokenizer, special, max_tokens=5)
    assert empty.token_ids.to_list() == [[special.bos, special.eos]]


def random_examples(n, max_tokens, seed=0):
    rng = np.random.default_rng(seed)
    rows = [[2, *rng.integers(5, 50, size=rng.integers(0, max_tokens - 1)).tolist(), 3] for _ in range(n)]
    return classification_data.TokenizedTexts(
        tf.ragged.constant(rows, tf.int32), rng.integers(0, 2, size=n).astype(np.int32), np.arange(n)
    )


def test_bucketed_batches_respect_the_token_budget():
    special = data_lib.SpecialIds(pad=0, bos=2, eos=3, unk=1)
    tokenized = random_examples(500, 40)
    budget = 256
    ds = classification_data.classification_dataset(
        tokenized, special, batch_tokens=budget, max_tokens=40, bucket_width=8
    )
    seen = []
    for inputs, labels in ds:
        token_ids, mask = inputs["token_ids"].numpy(), inputs["padding_mask"].numpy()
        assert set(inputs) == {"token_ids", "padding_mask"}
        assert token_ids.dtype == np.int32 and mask.dtype == bool and labels.dtype == tf.int32
        assert token_ids.size <= budget and labels.shape == (token_ids.shape[0],)
        np.testing.assert_array_equal(mask, token_ids != 0)
        np.testing.assert_array_equal(token_ids[:, 0], 2)  # [CLS] first, [SEP] last
        np.testing.assert_array_equal(token_ids[np.arange(len(token_ids)), mask.sum(1) - 1], 3)
        seen += [(tuple(row[m]), int(label)) for row, m, label in zip(token_ids, mask, labels.numpy())]
    expected = [(tuple(row), int(label)) for row, label in zip(tokenized.token_ids.to_list(), tokenized.labels)]
    assert sorted(seen) == sorted(expected)  # every example exactly once per epoch


@pytest.fixture
def context(tmp_path, tokenizer):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nthe cat sat \tpos\na dog\tneg\nthe mat\tpos\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nthe dog\tneg\n")
    spec = types.SimpleNamespace(
        data=ClassificationData(dir=str(tmp_path), batch_tokens=64, max_tokens=8), train=TrainSpec(seed=3)
    )
    return FakeContext(spec, ClassificationTokenizers(tokenizer, ["neg", "pos"]))


def test_unlabeled_texts_follow_the_training_split_with_label_minus_one(context, tokenizer):
    task = ClassificationTask()
    special = data_lib.SpecialIds.of(tokenizer)
    assert task.example_ids(context, "train", "train").tolist() == [0, 1, 2]
    unlabeled = ["a cat", "the dog sat on the mat on the mat"]
    # the teacher's view of each example id, as a method's columns would carry it
    columns = tf.data.Dataset.from_tensor_slices(
        {
            "id": tf.constant([4, 0, 3, 2, 1], tf.int64),
            "teacher_probs": tf.constant([[0.4, 0.6], [0.0, 1.0], [0.3, 0.7], [0.1, 0.9], [0.8, 0.2]]),
        }
    )
    ds = task.train_dataset(context, "train", columns=columns, unlabeled=unlabeled)
    texts = ["the cat sat", "a dog", "the mat", *unlabeled]
    expected_ids = data_lib.tokenize_to_ragged(tokenizer, texts).to_list()
    probs = {4: [0.4, 0.6], 0: [0.0, 1.0], 3: [0.3, 0.7], 2: [0.1, 0.9], 1: [0.8, 0.2]}
    labels_of = {0: 1, 1: 0, 2: 1, 3: -1, 4: -1}
    seen = 0
    for inputs, labels in ds.take(20):  # repeated: the columns' order, round and round
        assert set(inputs) == {"token_ids", "padding_mask", "teacher_probs"}
        for row, mask, p, label in zip(
            inputs["token_ids"].numpy(), inputs["padding_mask"].numpy(), inputs["teacher_probs"].numpy(), labels.numpy()
        ):
            example = next(i for i, q in probs.items() if np.allclose(q, p))
            assert row[mask].tolist() == [special.bos, *expected_ids[example][:6], special.eos]
            assert label == labels_of[example]
            seen += 1
    assert seen >= 10


def test_without_columns_unlabeled_texts_are_shuffled_in(context):
    task = ClassificationTask()
    ds = task.train_dataset(context, "train", unlabeled=["a cat", "the cat"])
    labels = np.concatenate([labels.numpy() for _, labels in ds.take(30)])
    assert set(labels.tolist()) == {-1, 0, 1}
    valid = task.valid_dataset(context, "train")
    ((inputs, labels),) = list(valid)  # one pass, one batch
    assert labels.numpy().tolist() == [0] and inputs["token_ids"].shape[0] == 1


def test_a_column_for_an_unknown_example_id_fails(context):
    columns = tf.data.Dataset.from_tensor_slices({"id": tf.constant([7], tf.int64)})
    ds = ClassificationTask().train_dataset(context, "train", columns=columns)
    with pytest.raises(tf.errors.InvalidArgumentError, match="has no kept training example"):
        next(iter(ds))
