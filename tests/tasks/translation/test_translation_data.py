"""Translation corpora, tokenization of both sides, bucketed batches, the join by example id."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import write_corpus

from tfkd import data as data_lib
from tfkd.tasks.translation import TranslationData
from tfkd.tasks.translation import data as translation_data


def test_misaligned_files_name_both_paths_and_counts(tmp_path):
    write_corpus(tmp_path, "train", [("a b", "x"), ("c", "y")])
    with open(tmp_path / "train.en", "a") as f:
        f.write("extra\n")
    with pytest.raises(data_lib.DataError) as e:
        translation_data.read_text_split(str(tmp_path), "train", "de", "en")
    assert str(e.value) == (f"misaligned corpus: {tmp_path}/train.de has 2 lines but {tmp_path}/train.en has 3 lines")


def test_missing_file_and_bad_utf8_are_named(tmp_path):
    with pytest.raises(data_lib.DataError, match=f"{tmp_path}/valid.de: file not found"):
        translation_data.read_text_split(str(tmp_path), "valid", "de", "en")
    (tmp_path / "test.de").write_bytes(b"gut\n\xff\xfe kaputt\n")
    (tmp_path / "test.en").write_text("good\nbroken\n")
    with pytest.raises(data_lib.DataError, match=f"{tmp_path}/test.de:2: not valid UTF-8"):
        translation_data.read_text_split(str(tmp_path), "test", "de", "en")


def test_empty_and_overlong_pairs_are_dropped_and_counted(tokenizer, caplog):
    corpus = translation_data.ParallelCorpus(
        ["the cat", "", "the cat sat on the mat on the mat", "a dog"],
        ["a dog", "the cat", "a dog", ""],
        "test",
    )
    with caplog.at_level("INFO", logger="tfkd"):
        tokenized = translation_data.tokenize_corpus(corpus, tokenizer, tokenizer, max_tokens=6, name="train")
    assert tokenized.kept.tolist() == [0]
    assert "train: dropped 2 empty and 1 over-long (> 6 tokens) pairs of 4 (test)" in caplog.text


def test_an_empty_split_and_one_with_nothing_left_are_one_line(tokenizer, tmp_path):
    write_corpus(tmp_path, "train", [])
    data = TranslationData(dir=str(tmp_path), src_lang="de", tgt_lang="en")
    with pytest.raises(data_lib.DataError) as e:
        translation_data.read_split(data, "train")
    assert str(e.value) == (
        f"{tmp_path}/train.de + {tmp_path}/train.en: no sentence pairs in the train split (data.train_split: train)"
    )
    corpus = translation_data.ParallelCorpus(["the cat sat on the mat", ""], ["a dog sat on the mat", "a"], "x")
    with pytest.raises(data_lib.DataError, match=r"^x: all 2 pairs are empty or longer than data.max_tokens \(3 "):
        translation_data.tokenize_corpus(corpus, tokenizer, tokenizer, max_tokens=3)


def test_a_100_kb_line_and_a_line_of_control_characters_are_dropped_and_counted(tokenizer, caplog):
    control = "".join(chr(c) for c in range(1, 32) if chr(c) not in "\n\r") + "\x7f"
    corpus = translation_data.ParallelCorpus(["the cat", "the " * 25_000, control], ["a dog", "a dog", control], "x")
    with caplog.at_level("INFO", logger="tfkd"):
        tokenized = translation_data.tokenize_corpus(corpus, tokenizer, tokenizer, max_tokens=6, name="train")
    assert tokenized.kept.tolist() == [0]
    assert "train: dropped 1 empty and 1 over-long (> 6 tokens) pairs of 3 (x)" in caplog.text


def test_bucketed_batches_respect_the_token_budget():
    rng = np.random.default_rng(0)
    n = 600
    src = [rng.integers(5, 50, size=rng.integers(1, 40)).tolist() for _ in range(n)]
    tgt = [rng.integers(5, 50, size=rng.integers(1, 39)).tolist() for _ in range(n)]
    tokenized = translation_data.TokenizedCorpus(tf.ragged.constant(src), tf.ragged.constant(tgt), np.arange(n))
    special = data_lib.SpecialIds(pad=0, bos=2, eos=3, unk=1)
    budget = 256
    ds = translation_data.seq2seq_dataset(tokenized, special, batch_tokens=budget, max_tokens=40, bucket_width=8)
    seen = 0
    for inputs, target in ds:
        source, decoder = inputs["source_ids"].numpy(), inputs["decoder_ids"].numpy()
        assert source.size <= budget and decoder.size <= budget and target.numpy().size <= budget
        assert decoder.shape == target.shape
        np.testing.assert_array_equal(decoder[:, 0], 2)
        lengths = (target.numpy() != 0).sum(1)
        # every target ends with EOS and decoder_ids is the target shifted right
        np.testing.assert_array_equal(target.numpy()[np.arange(len(lengths)), lengths - 1], 3)
        body = target.numpy()[:, :-1]
        tokens = (body != 0) & (body != 3)
        np.testing.assert_array_equal(decoder[:, 1:][tokens], body[tokens])
        seen += source.shape[0]
    assert seen == n  # every example exactly once per epoch


def test_tfds_translation_source(tmp_path):
    import tensorflow_datasets as tfds

    spec = TranslationData(
        source="tfds", tfds="wmt14_translate/de-en", src_lang="de", tgt_lang="en", data_dir=str(tmp_path), valid_limit=7
    )
    with tfds.testing.mock_data(num_examples=7):
        corpus = translation_data.read_split(spec, "valid")
    assert len(corpus) == 7 and corpus.origin == "tfds:wmt14_translate/de-en/validation[:7]"
    assert all(isinstance(s, str) for s in corpus.source + corpus.target)


def test_tfds_missing_dataset_is_one_line(tmp_path):
    spec = TranslationData(
        source="tfds", tfds="wmt14_translate/de-en", src_lang="de", tgt_lang="en", data_dir=str(tmp_path)
    )
    with pytest.raises(data_lib.DataError) as e:
        translation_data.read_split(spec, "train")
    assert str(e.value).startswith(f"tfds wmt14_translate/de-en split train (data_dir={tmp_path}): cannot load:")
    assert "\n" not in str(e.value)


def test_streamed_columns_join_their_pairs_by_example_id():
    # ids are corpus lines; pair 1 was dropped, so rows and ids differ
    src = [[5, 6], [7], [8, 9, 10]]
    tgt = [[11], [12, 13], [14, 15]]
    tokenized = translation_data.TokenizedCorpus(tf.ragged.constant(src), tf.ragged.constant(tgt), np.array([0, 2, 5]))
    columns = tf.data.Dataset.from_tensor_slices(
        {"id": tf.constant([5, 0, 2], tf.int64), "extra": tf.constant([50, 0, 20])}
    )
    special = data_lib.SpecialIds(pad=0, bos=2, eos=3, unk=1)
    ds = translation_data.seq2seq_dataset(
        tokenized,
        special,
        batch_tokens=1,
        max_tokens=8,
        bucket_width=8,
        columns=columns.map(lambda x: {"id": x["id"], "extra": x["extra"][None]}),
    )
    seen = {}
    for inputs, target in ds:
        seen[int(inputs["extra"][0, 0])] = (inputs["source_ids"][0].numpy().tolist(), target[0].numpy().tolist())
    assert seen == {50: ([8, 9, 10], [14, 15, 3]), 0: ([5, 6], [11, 3]), 20: ([7], [12, 13, 3])}


def test_a_column_for_an_unknown_example_id_fails():
    tokenized = translation_data.TokenizedCorpus(tf.ragged.constant([[5]]), tf.ragged.constant([[6]]), np.array([0]))
    columns = tf.data.Dataset.from_tensor_slices({"id": tf.constant([3], tf.int64)})
    special = data_lib.SpecialIds(pad=0, bos=2, eos=3, unk=1)
    ds = translation_data.seq2seq_dataset(
        tokenized, special, batch_tokens=8, max_tokens=8, bucket_width=8, columns=columns
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="has no kept training pair"):
        next(iter(ds))
