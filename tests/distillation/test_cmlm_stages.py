"""The C-MLM fine-tuning pipeline (:mod:`tfkd.distillation.cmlm_stages`): training batches are
masked from per-batch seeds drawn from ``distill.finetune.seed``, so two runs of a spec mask
alike (and a resumed run replays its masks), whatever tf.data runs in parallel; validation is
masked the same way at every pass."""

import dataclasses

import numpy as np
import tensorflow as tf

from tfkd.data import SpecialIds
from tfkd.distillation.cmlm_stages import _cmlm_dataset
from tfkd.distillation.settings import CMLMFinetuneSpec

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
