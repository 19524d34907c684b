import numpy as np
import pytest
import tensorflow as tf

from tfkd.masking import segment_mask, span_lengths, span_mask, special_free, token_mask, uniform_count_mask

PAD, CLS, SEP, MASK = 0, 2, 3, 4
VOCAB = 1000


def batch(rows=400, seed=0):
    """[CLS] tokens [SEP] padding, lengths 5..60; tokens never collide with the specials."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 61, size=rows)
    ids = np.zeros((rows, 64), np.int32)
    for r, n in enumerate(lengths):
        ids[r, 0] = CLS
        ids[r, 1 : n + 1] = rng.integers(10, VOCAB, size=n)
        ids[r, n + 1] = SEP
    return ids


def chosen_positions(shape, positions, weights):
    """A boolean [B, L] of the predicted positions."""
    chosen = np.zeros(shape, bool)
    rows, cols = np.nonzero(weights > 0)
    chosen[rows, positions[rows, cols]] = True
    return chosen


def corruption_shares(ids, masked, positions, weights):
    """(mask share, random share, kept share) of the predicted positions."""
    rows, cols = np.nonzero(weights > 0)
    pos = positions[rows, cols]
    before, after = ids[rows, pos], masked[rows, pos]
    is_mask = after == MASK
    kept = after == before
    return is_mask.mean(), (~is_mask & ~kept).mean(), kept.mean()


@pytest.mark.parametrize("masker", [token_mask, span_mask])
def test_maskers_choose_15_percent_split_80_10_10_and_never_touch_specials(masker):
    ids = batch()
    candidates = special_free(ids, [PAD, CLS, SEP]).numpy()
    masked, positions, labels, weights = [
        t.numpy() for t in masker(ids, candidates, 0.15, MASK, VOCAB, seed=tf.constant([1, 2]))
    ]
    chosen = chosen_positions(ids.shape, positions, weights)
    rows, cols = np.nonzero(weights > 0)
    assert not (chosen & ~candidates).any()  # [CLS], [SEP] and padding are never chosen
    assert (masked[~chosen] == ids[~chosen]).all()  # nothing else changes
    assert abs(chosen.sum() / candidates.sum() - 0.15) < 0.01
    np.testing.assert_array_equal(labels[rows, cols], ids[rows, positions[rows, cols]])
    mask_share, random_share, kept_share = corruption_shares(ids, masked, positions, weights)
    # span decisions are per span, so their shares vary more
    tolerance = 0.03 if masker is token_mask else 0.06
    assert abs(mask_share - 0.8) < tolerance and abs(random_share - 0.1) < tolerance
    assert abs(kept_share - 0.1) < tolerance + 0.002  # a random token may equal the original


@pytest.mark.parametrize("masker", [token_mask, span_mask])
def test_maskers_are_reproducible_from_the_seed_and_differ_between_seeds(masker):
    ids = batch(50)
    candidates = special_free(ids, [PAD, CLS, SEP])
    first = masker(ids, candidates, 0.15, MASK, VOCAB, seed=tf.constant([3, 4]))
    again = masker(ids, candidates, 0.15, MASK, VOCAB, seed=tf.constant([3, 4]))
    other = masker(ids, candidates, 0.15, MASK, VOCAB, seed=tf.constant([3, 5]))
    np.testing.assert_array_equal(first[0], again[0])
    assert (first[0].numpy() != other[0].numpy()).any()


def test_span_lengths_follow_the_truncated_geometric_distribution_mean_3_8():
    lengths = span_lengths(tf.random.stateless_uniform([200000], seed=[0, 1])).numpy()
    support = np.arange(1, 11)
    probs = 0.2 * 0.8 ** (support - 1)
    probs /= probs.sum()  # truncated at 10 and renormalised, as SpanBERT samples
    assert lengths.min() == 1 and lengths.max() == 10
    assert abs(lengths.mean() - (support * probs).sum()) < 0.02
    assert abs((support * probs).sum() - 3.8) < 0.05  # SpanBERT's reported mean
    np.testing.assert_allclose(np.bincount(lengths, minlength=11)[1:] / len(lengths), probs, atol=0.005)


def test_span_mask_masks_contiguous_runs_and_meets_the_budget_exactly():
    ids = batch(300, seed=1)
    candidates = special_free(ids, [PAD, CLS, SEP]).numpy()
    _, positions, _, weights = [
        t.numpy() for t in span_mask(ids, candidates, 0.15, MASK, VOCAB, seed=tf.constant([5, 6]))
    ]
    chosen = chosen_positions(ids.shape, positions, weights)
    budget = np.maximum(1, np.round(0.15 * candidates.sum(1)))
    np.testing.assert_array_equal(chosen.sum(1), budget)


def mean_run(ids, positions, weights):
    chosen = chosen_positions(ids.shape, positions, weights)
    runs = sum(np.sum(np.diff(np.concatenate([[0], row.astype(int), [0]])) == 1) for row in chosen)
    return chosen.sum() / runs


def test_span_mask_runs_are_about_three_times_longer_than_token_mask_runs():
    ids = np.tile(batch(1, seed=2)[:, :40], (300, 1))  # 38 candidates a row: a budget of 6
    ids[:, 39] = SEP
    candidates = special_free(ids, [PAD, CLS, SEP])
    spans = mean_run(
        ids, *[t.numpy() for t in span_mask(ids, candidates, 0.15, MASK, VOCAB, seed=tf.constant([1, 1]))[1::2]]
    )
    tokens = mean_run(
        ids, *[t.numpy() for t in token_mask(ids, candidates, 0.15, MASK, VOCAB, seed=tf.constant([1, 1]))[1::2]]
    )
    assert tokens < 1.3 and spans > 2.8, (tokens, spans)


def test_token_mask_picks_one_position_in_a_row_with_a_single_candidate():
    ids = np.array([[CLS, 50, SEP, PAD]], np.int32)
    masked, positions, labels, weights = token_mask(
        ids, special_free(ids, [PAD, CLS, SEP]), 0.01, MASK, VOCAB, seed=tf.constant([0, 0])
    )
    assert positions.numpy().tolist() == [[1]] and labels.numpy().tolist() == [[50]]
    assert weights.numpy().tolist() == [[1.0]]


# ----------------------------------------------------------------------------- uniform count (Mask-Predict)


def test_uniform_count_mask_draws_the_count_uniformly_from_one_to_the_length():
    ids = batch(rows=4000, seed=3)
    candidates = (ids != PAD) & (ids != CLS) & (ids != SEP)
    masked, chosen = (
        t.numpy() for t in uniform_count_mask(tf.constant(ids), tf.constant(candidates), MASK, seed=tf.constant([5, 6]))
    )
    n = candidates.sum(1)
    k = chosen.sum(1)
    assert not (chosen & ~candidates).any()  # only candidates
    assert ((k >= 1) & (k <= n)).all()  # 1..n
    np.testing.assert_array_equal(masked[chosen], MASK)
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])
    # k / n is uniform on {1/n..1}: (k - 1) / n is uniform on [0, 1) up to the discreteness
    share = (k - 1 + 0.5) / n
    assert abs(share.mean() - 0.5) < 0.02
    hist, _ = np.histogram(share, bins=5, range=(0, 1))
    assert hist.min() > 0.8 * len(k) / 5
    # positions are uniform: the first 50 positions of rows with 50+ tokens are chosen about
    # equally often (about 800 rows: a standard error near 0.018)
    long_rows = n >= 50
    per_position = chosen[long_rows][:, 1:51].mean(0)
    assert per_position.std() < 0.035 and abs(per_position.mean() - 0.5) < 0.03
    # same seed, same mask; another seed, another one
    again = uniform_count_mask(tf.constant(ids), tf.constant(candidates), MASK, seed=tf.constant([5, 6]))[1].numpy()
    other = uniform_count_mask(tf.constant(ids), tf.constant(candidates), MASK, seed=tf.constant([5, 7]))[1].numpy()
    np.testing.assert_array_equal(again, chosen)
    assert (other != chosen).any()


def test_uniform_count_mask_leaves_rows_without_candidates_alone():
    ids = np.array([[CLS, 11, SEP, PAD], [PAD, PAD, PAD, PAD]], np.int32)
    candidates = np.array([[False, True, False, False], [False] * 4])
    masked, chosen = uniform_count_mask(tf.constant(ids), tf.constant(candidates), MASK, seed=tf.constant([1, 2]))
    np.testing.assert_array_equal(masked.numpy(), [[CLS, MASK, SEP, PAD], [PAD] * 4])
    np.testing.assert_array_equal(chosen.numpy(), candidates)


def mass_reference(ids, length, start, k, bos, pad, mask):
    """MASS's decoder input and target for one sentence, by hand: the segment ``start .. start +
    k - 1`` shifted right by one (``bos`` before the first token), ``[MASK]`` elsewhere in the
    sentence, padding after it; the target is the segment, padding elsewhere."""
    decoder = [pad] * len(ids)
    target = [pad] * len(ids)
    for m in range(length):
        if start <= m < start + k:
            decoder[m] = bos if m == 0 else ids[m - 1]
            target[m] = ids[m]
        else:
            decoder[m] = mask
    return decoder, target


def test_segment_mask_hides_one_contiguous_half_and_shifts_the_decoder_input():
    ids = batch(rows=400, seed=3)
    lengths = (ids != PAD).sum(1)
    encoder, decoder, target = (
        t.numpy()
        for t in segment_mask(ids, lengths, 0.5, MASK, VOCAB, bos_id=CLS, pad_id=PAD, seed=tf.constant([5, 6]))
    )
    shares = []
    for r in range(len(ids)):
        n = lengths[r]
        segment = np.flatnonzero(target[r] != PAD)
        # about half (round(n / 2), at least one), contiguous, inside the sentence
        k = max(1, int(np.round(0.5 * n)))
        assert len(segment) == k and (np.diff(segment) == 1).all() and segment[-1] < n
        start = segment[0]
        expected_decoder, expected_target = mass_reference(ids[r].tolist(), n, start, k, CLS, PAD, MASK)
        assert decoder[r].tolist() == expected_decoder and target[r].tolist() == expected_target
        # the encoder: the sentence with the segment corrupted, nothing else touched
        outside = np.ones(len(ids[r]), bool)
        outside[segment] = False
        assert (encoder[r][outside] == ids[r][outside]).all()
        shares.append(encoder[r][segment])
        assert (ids[r][segment] == target[r][segment]).all()
    corrupted = np.concatenate(shares)
    original = np.concatenate([ids[r][target[r] != PAD] for r in range(len(ids))])
    is_mask = corrupted == MASK
    kept = corrupted == original
    assert abs(is_mask.mean() - 0.8) < 0.02 and abs(kept.mean() - 0.1) < 0.015
    assert abs((~is_mask & ~kept).mean() - 0.1) < 0.015


def test_segment_mask_starts_uniformly_and_handles_short_and_empty_rows():
    ids = np.array([[11, 0, 0, 0], [11, 12, 0, 0], [11, 12, 13, 0], [0, 0, 0, 0]], np.int32)
    lengths = (ids != 0).sum(1)
    starts = {1: [], 2: [], 3: []}
    for seed in range(300):
        encoder, decoder, target = (
            t.numpy() for t in segment_mask(ids, lengths, 0.5, MASK, VOCAB, CLS, 0, seed=tf.constant([seed, 0]))
        )
        for r, n in ((0, 1), (1, 2), (2, 3)):
            segment = np.flatnonzero(target[r])
            assert len(segment) == max(1, int(np.round(n / 2)))  # 1, 1 (round half to even), 2
            starts[n].append(segment[0])
        # an empty row stays empty
        assert not encoder[3].any() and not decoder[3].any() and not target[3].any()
    # a one-token sentence is its own segment, read after [CLS]
    assert set(starts[1]) == {0}
    for n, possible in ((2, [0, 1]), (3, [0, 1])):
        counts = np.bincount(starts[n], minlength=len(possible))
        assert len(counts) == len(possible) and counts.min() > 100


def test_segment_mask_is_reproducible_from_the_seed():
    ids = batch(rows=50)
    lengths = (ids != PAD).sum(1)
    a = [t.numpy() for t in segment_mask(ids, lengths, 0.5, MASK, VOCAB, CLS, PAD, seed=tf.constant([1, 2]))]
    b = [t.numpy() for t in segment_mask(ids, lengths, 0.5, MASK, VOCAB, CLS, PAD, seed=tf.constant([1, 2]))]
    c = [t.numpy() for t in segment_mask(ids, lengths, 0.5, MASK, VOCAB, CLS, PAD, seed=tf.constant([1, 3]))]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[2], c[2])
