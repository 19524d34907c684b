"""The C-MLM fine-tuning pipeline (:mod:`tfkd.teachers.cmlm_stages`): training batches are
masked from per-batch seeds drawn from ``distill.finetune.seed``, so two runs of a spec mask
alike (and a resumed run replays its masks), whatever tf.data runs in parallel; validation is
masked the same way at every pass; ``distill.finetune.bucket_width`` batches pairs of like
length."""

import dataclasses
import os

import numpy as np
import tensorflow as tf
from helpers import REPO

from tfkd.data import SpecialIds
from tfkd.plan import plan_run
from tfkd.runner import Runner
from tfkd.spec import load_spec
from tfkd.teachers.cmlm_stages import _cmlm_dataset
from tfkd.teachers.settings import CMLMFinetuneSpec

SPECIAL = SpecialIds(pad=0, bos=101, eos=102, unk=100)
MASK, VOCAB = 103, 400


@dataclasses.dataclass
class Pairs:
    source_ids: tf.RaggedTensor
    target_ids: tf.RaggedTensor

    def __len__(self):
        return int(self.source_ids.nrows())


def pairs(n=48):
    rng = np.random.default_rng(0)
    source = [rng.integers(200, 300, size=rng.integers(3, 12)).tolist() for _ in range(n)]
    target = [rng.integers(300, 400, size=rng.integers(3, 12)).tolist() for _ in range(n)]
    return Pairs(tf.ragged.constant(source), tf.ragged.constant(target))


def masked_inputs(ds, batches):
    return [x["token_ids"].numpy() for x, _, _ in ds.take(batches)]


def training(seed):
    finetune = CMLMFinetuneSpec(batch_size=8, mask_rate=0.4, seed=seed)
    return _cmlm_dataset(pairs(), SPECIAL, MASK, VOCAB, finetune, shuffle_buffer=100)


def test_training_masks_replay_from_the_seed_and_differ_by_seed():
    first, again = masked_inputs(training(1), 12), masked_inputs(training(1), 12)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert all(MASK in batch for batch in first)
    other = masked_inputs(training(2), 12)
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other))


def test_validation_is_masked_alike_at_every_pass():
    finetune = CMLMFinetuneSpec(batch_size=8, mask_rate=0.4)
    ds = _cmlm_dataset(pairs(), SPECIAL, MASK, VOCAB, finetune, seed=tf.constant([1, 7]))
    first, again = masked_inputs(ds, 6), masked_inputs(ds, 6)
    assert len(first) == 6 and all(np.array_equal(a, b) for a, b in zip(first, again))


def packed_lengths(ds, batches):
    """Each batch's packed pair lengths (``[CLS] X [SEP] Y [SEP]``, its real tokens)."""
    return [x["padding_mask"].numpy().sum(axis=1) for x, _, _ in ds.take(batches)]


def test_bucket_width_batches_pairs_of_like_length_and_each_pair_once_an_epoch():
    finetune = CMLMFinetuneSpec(batch_size=8, mask_rate=0.4, bucket_width=4)
    data = pairs()
    bucketed = _cmlm_dataset(data, SPECIAL, MASK, VOCAB, finetune, shuffle_buffer=100)
    lengths = packed_lengths(bucketed, 30)
    assert all(len(batch) == 8 and len(set(batch // 4)) == 1 for batch in lengths), lengths
    # without it, batches mix lengths (the padding the switch removes)
    plain = _cmlm_dataset(
        data, SPECIAL, MASK, VOCAB, finetune.model_copy(update={"bucket_width": None}), shuffle_buffer=100
    )
    assert any(len(set(batch // 4)) > 1 for batch in packed_lengths(plain, 30))
    # the pairs of an epoch, streamed from the shuffle, are batched each once (the last windows of
    # a repeated stream fill from the next epoch, so count over many epochs: every pair alike)
    counts = np.bincount(np.concatenate(lengths), minlength=30)
    expected = np.bincount(
        data.source_ids.row_lengths().numpy() + data.target_ids.row_lengths().numpy() + 3, minlength=30
    )
    assert np.allclose(counts / counts.sum(), expected / expected.sum(), atol=0.06)
    # and the masks still replay from the seed (a dataset iterated again reshuffles: two new ones)
    first, again = (_cmlm_dataset(data, SPECIAL, MASK, VOCAB, finetune, shuffle_buffer=100) for _ in range(2))
    assert all(np.array_equal(a, b) for a, b in zip(masked_inputs(first, 12), masked_inputs(again, 12)))


def test_bucket_width_keys_the_teacher_and_what_it_teaches_only_when_set(data_dir):
    quickstart = os.path.join(REPO, "specs", "quickstart.yaml")
    plain, bucketed = load_spec(quickstart), load_spec(quickstart, ["distill.finetune.bucket_width=8"])
    assert "bucket_width" not in plain.distill.finetune.model_dump(mode="json")
    plain_runner, bucketed_runner = Runner(plain, plan_run(plain)), Runner(bucketed, plan_run(bucketed))
    for name in ("teacher_finetune", "teacher_cache", "train"):
        assert bucketed_runner.key(name) != plain_runner.key(name), name
    for name in ("vocab", "baseline"):
        assert bucketed_runner.key(name) == plain_runner.key(name), name
