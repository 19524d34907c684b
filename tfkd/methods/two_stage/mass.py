"""LightPAFF for MASS (``lightpaff.txt`` section 5, appendix eqs. 4 and 7): masked
sequence-to-sequence pre-training (Song et al. 2019) of the tfkd Transformer, teacher and
student, on monolingual sentences of both languages with one shared vocabulary.

Each sentence ``x`` of ``n`` tokens loses a contiguous segment of ``round(n * segment_rate)``
tokens (half by default; at least one) in the encoder's input (80% ``[MASK]``, 10% a random
token, 10% kept); the decoder reads the segment shifted right by one (``[MASK]`` at every other
position of the sentence) and predicts the segment (:func:`tfkd.masking.segment_mask`). The loss
is the translation task's: cross-entropy over the predicted positions (pad elsewhere), plus
``KL(teacher || student)`` at the same positions when distilling. A sentence is a translation
example whose source and target are the same language, so the pre-trained model is the
translation student itself and fine-tuning starts from all of its weights.
"""

import logging

import numpy as np
import tensorflow as tf

log = logging.getLogger("tfkd")


class MaskedSeq2Seq:
    """MASS's objective for :class:`tfkd.methods.two_stage.generative.GenerativePretrainStage`."""

    name = "masked_seq2seq"
    unit = "sentences"  # what the batch_size counts
    unused_settings = ("mask_rate",)

    def new_teacher(self, context, settings):
        """A :class:`~tfkd.models.transformer.TransformerSeq2Seq` of ``distill.teacher_pretrain``'s
        sizes (``num_layers`` encoder blocks, ``decoder_layers`` decoder blocks) over the run's
        shared vocabulary, its embeddings shared and tied."""
        from tfkd.data import SpecialIds
        from tfkd.models.transformer import TransformerSeq2Seq

        vocabulary = context.tokenizers().source
        size = vocabulary.vocabulary_size()
        return TransformerSeq2Seq(
            source_vocab_size=size,
            target_vocab_size=size,
            encoder_layers=settings.num_layers,
            decoder_layers=settings.decoder_layers or settings.num_layers,
            hidden_dim=settings.hidden_dim,
            intermediate_dim=settings.intermediate_dim,
            num_heads=settings.num_heads,
            dropout=settings.dropout,
            max_length=settings.max_sequence_length,
            tie_embeddings=True,
            share_embeddings=True,
            pad_id=SpecialIds.of(vocabulary).pad,
            name="teacher",
        )

    def batches(self, context, lines, memo_key, training, seed, settings):
        """``(dataset, sentences, tokens)``: MASS batches ``({"source_ids", "decoder_ids"},
        target_ids)`` of ``lines`` tokenized with the shared vocabulary (empty lines dropped,
        longer ones cut to ``settings.max_length`` tokens), ``settings.batch_size`` sentences of
        similar length a batch, ``settings.segment_rate`` of each masked; training batches
        repeat, reshuffle and draw a new masking every pass (replayed from ``seed``), validation
        batches are masked the same way every time."""
        tokenizer = context.tokenizers().source
        tokens = context.memo(
            ("two_stage", "mass", memo_key), lambda: tokenize_sentences(tokenizer, lines, settings.max_length, memo_key)
        )
        dataset = masked_seq2seq_dataset(
            tokens, tokenizer, settings.batch_size, settings.max_length, settings.segment_rate, training, seed
        )
        return dataset, int(tokens.nrows()), int(tokens.row_lengths().numpy().sum())


def tokenize_sentences(tokenizer, lines, max_length, name):
    """The non-empty ``lines`` as token ids (a ``tf.RaggedTensor``), cut to ``max_length``."""
    from tfkd.data import tokenize_to_ragged

    ids = tokenize_to_ragged(tokenizer, list(lines))
    lengths = ids.row_lengths().numpy()
    kept = np.flatnonzero(lengths > 0)
    cut = int((lengths > max_length).sum())
    if cut or len(kept) < len(lengths):
        log.info(
            "%s: %d empty sentences dropped, %d cut to %d tokens, of %d",
            name,
            len(lengths) - len(kept),
            cut,
            max_length,
            len(lengths),
        )
    return tf.gather(ids, kept)[:, :max_length]


def masked_seq2seq_dataset(
    token_ids, tokenizer, batch_size, max_length, segment_rate, training, seed=None, shuffle_buffer=100000
):
    """Batches of MASS examples from ``token_ids`` (ragged, one sentence a row)."""
    from tfkd.data import MASK, SpecialIds, bucket_boundaries
    from tfkd.masking import segment_mask

    special = SpecialIds.of(tokenizer)
    mask_id = tokenizer.token_to_id(MASK)
    vocab_size = tokenizer.vocabulary_size()
    token_ids = tf.cast(token_ids, tf.int32)
    ds = tf.data.Dataset.range(token_ids.nrows()).map(lambda i: token_ids[i])  # one dense sentence each
    if training:
        ds = ds.shuffle(min(shuffle_buffer, int(token_ids.nrows())), seed=seed, reshuffle_each_iteration=True).repeat()
    boundaries = bucket_boundaries(max_length, 8)
    ds = ds.bucket_by_sequence_length(
        lambda x: tf.shape(x)[0],
        boundaries,
        [batch_size] * (len(boundaries) + 1),
        padding_values=tf.constant(special.pad, tf.int32),
    )
    # one stateless seed per batch: a new masking every pass, the same sequence every run
    seeds = tf.data.Dataset.random(seed=0 if seed is None else seed).batch(2)
    if not training:  # the same masking at every validation
        seeds = tf.data.Dataset.from_tensors(tf.constant([0, 1], tf.int64)).repeat()

    def to_batch(ids, batch_seed):
        lengths = tf.reduce_sum(tf.cast(tf.not_equal(ids, special.pad), tf.int32), axis=1)
        encoder_ids, decoder_ids, target_ids = segment_mask(
            ids, lengths, segment_rate, mask_id, vocab_size, special.bos, special.pad, seed=batch_seed
        )
        return {"source_ids": encoder_ids, "decoder_ids": decoder_ids}, target_ids

    ds = tf.data.Dataset.zip((ds, seeds)).map(to_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


__all__ = ["MaskedSeq2Seq", "masked_seq2seq_dataset", "tokenize_sentences"]
