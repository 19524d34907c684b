"""The masked copy X' of every training batch: drawn in the pipeline, new every epoch,
replayed from the seed, padding never masked."""

import types

import numpy as np
import tensorflow as tf
import tiny_mask_task as tiny

from tfkd.methods.mask_task import MaskTaskSpec
from tfkd.methods.mask_task.batches import with_masked_source


def spec(seed=1, masking="token"):
    return types.SimpleNamespace(
        distill=MaskTaskSpec(masking=masking, mask_rate=0.3), train=types.SimpleNamespace(seed=seed)
    )


def source_batches():
    inputs, target = tiny.batch()
    batch = ({"source_ids": inputs["source_ids"], "decoder_ids": inputs["decoder_ids"]}, target)
    return tf.data.Dataset.from_tensors(batch).repeat(3)  # three "epochs" of one batch


def masked(seed=1, masking="token"):
    source_tokenizer, _ = tiny.tokenizers()
    return [
        (
            b[0]["source_ids"].numpy(),
            b[0]["masked_source_ids"].numpy(),
            b[0]["mask_positions"].numpy(),
            b[0]["mask_weights"].numpy(),
        )
        for b in with_masked_source(source_batches(), spec(seed, masking), source_tokenizer)
    ]


def test_every_batch_gets_a_masked_copy_that_changes_every_epoch_and_replays_from_the_seed():
    first, again, other = masked(), masked(), masked(seed=2)
    for (source, copy, positions, weights), (_, copy_again, _, _) in zip(first, again):
        np.testing.assert_array_equal(copy, copy_again)
        assert (copy[source == 0] == 0).all()  # padding is never masked
        rows, cols = np.nonzero(weights)
        assert (source[rows, positions[rows, cols]] != 0).all()
        changed = copy != source
        assert changed.any() and not (changed & (source == 0)).any()
    assert not np.array_equal(first[0][1], first[1][1])  # the same sentences, a new mask
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other))


def test_span_masking_is_a_switch_that_changes_the_masks():
    token, span = masked(masking="token"), masked(masking="span")
    assert any(not np.array_equal(a[2], b[2]) for a, b in zip(token, span))
