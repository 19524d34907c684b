"""C-MLM inputs and masking: the source is never masked, about 15% of the target is."""

import numpy as np
import tensorflow as tf

from tfkd.data import SpecialIds
from tfkd.models.cmlm import cmlm_mask, pack_pairs

SPECIAL = SpecialIds(pad=0, bos=101, eos=102, unk=100)
MASK = 103


def batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    source = [rng.integers(1000, 2000, size=rng.integers(3, 25)).tolist() for _ in range(n)]
    target = [rng.integers(2000, 3000, size=rng.integers(3, 25)).tolist() for _ in range(n)]
    return source, target


def test_pack_pairs_layout_and_truncation_keeps_the_target():
    token_ids, segment_ids, padding = pack_pairs(tf.ragged.constant([[5, 6, 7, 8]]), tf.ragged.constant([[9, 10]]),
                                                 8, SPECIAL)
    assert token_ids.numpy().tolist() == [[101, 5, 6, 7, 102, 9, 10, 102]]
    assert segment_ids.numpy().tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
    assert padding.numpy().all()


def test_cmlm_mask_never_touches_the_source_and_masks_about_15_percent_of_the_target():
    source, target = batch(400)
    token_ids, segment_ids, padding = pack_pairs(tf.ragged.constant(source), tf.ragged.constant(target), 64, SPECIAL)
    masked, positions, mask_ids, weights = cmlm_mask(token_ids, segment_ids, padding, 0.15, MASK, 3000, 20,
                                                     seed=tf.constant([1, 2]))
    token_ids, segment_ids, masked = token_ids.numpy(), segment_ids.numpy(), masked.numpy()
    positions, mask_ids, weights = positions.numpy(), mask_ids.numpy(), weights.numpy()
    changed = masked != token_ids
    # nothing outside the target side ever changes or is predicted
    assert not (changed & (segment_ids == 0)).any()
    predicted = np.zeros_like(changed)
    for row in range(len(positions)):
        predicted[row, positions[row][weights[row] > 0]] = True
    assert not (predicted & (segment_ids == 0)).any()
    assert (changed <= predicted).all()
    # mask_ids are the original tokens at the predicted positions
    np.testing.assert_array_equal(np.take_along_axis(token_ids, positions, 1)[weights > 0], mask_ids[weights > 0])
    target_tokens = ((segment_ids == 1) & (token_ids != 0)).sum()
    fraction = predicted.sum() / target_tokens
    assert 0.13 < fraction < 0.20, fraction  # 15% plus the at-least-one rule on short targets
    assert (predicted.sum(1) >= 1).all()
    # BERT's 80/10/10: most chosen positions read [MASK]
    assert 0.7 < (masked[predicted] == MASK).mean() < 0.9
