"""Parallel (Mask-Predict) Transformer decoding: the CMLM Transformer (Ghazvininejad et al.
2019, the baseline of abnet.txt Table 1) and the decoder half it shares with AB-Net-Enc's
parallel variant (:class:`tfkd.models.abnet.ABNetEncParallel`).

- :class:`ParallelTransformerDecoder`: mixed into a model that has
  :class:`~tfkd.models.TransformerSeq2Seq`'s decoder attributes (``target_embedding``,
  ``decoder_blocks``, ...). Its decoder reads the whole target (some tokens ``[MASK]``) with
  self-attention both ways, and a ``[LENGTH]`` vector, read by the encoder in place of its first
  token, predicts the target length (``length_logits``). Mask-Predict drives it
  (:mod:`tfkd.decoding.mask_predict`).
- :class:`CMLMTransformer` (``student.kind: cmlm_transformer``): the Transformer encoder reading
  ``[LENGTH] x`` and that decoder, trained from the references by ``distill.method: conditional_mlm``.
"""

import keras
from keras import ops

from tfkd import registry
from tfkd.models.abilities import ParallelDecoding, TargetMaskToken
from tfkd.models.configs import CMLMTransformerConfig
from tfkd.models.transformer import TransformerSeq2Seq


class ParallelTransformerDecoder(TargetMaskToken, ParallelDecoding):
    """A bidirectional Transformer decoder and a ``[LENGTH]`` predictor (see the module doc).

    The model calls :meth:`_build_length_predictor` in its constructor and reads
    ``length_embedding`` in place of its encoder's first token."""

    def _build_length_predictor(self, encoder_width, max_target_length, mask_id, initializer):
        if mask_id is None:
            raise ValueError(f"{type(self).__name__} needs mask_id, the target vocabulary's [MASK] id")
        self.max_target_length = max_target_length
        self.mask_id = mask_id
        self.length_embedding = self.add_weight(
            shape=(encoder_width,), initializer=initializer, name="length_embedding"
        )
        self.length_classifier = keras.layers.Dense(max_target_length + 1, name="length_classifier")

    def supports_incremental_decoding(self):
        return False  # every position reads every other: no left-to-right caches

    def length_logits(self, hidden, padding_mask=None):
        """Logits ``[B, max_target_length + 1]`` of the target length, from ``[LENGTH]``."""
        return self.length_classifier(hidden[:, 0])

    def decode(self, decoder_ids, encoder_hidden, encoder_padding_mask, training=False, positions=None):
        """Logits ``[B, T, V]`` at every position of ``decoder_ids`` ``[B, T]``, each reading the
        whole target, or ``[B, P, V]`` at ``positions`` ``[B, P]`` only."""
        x = self._decoder_states(decoder_ids, encoder_hidden, encoder_padding_mask, training, use_causal_mask=False)
        if positions is not None:
            x = ops.take_along_axis(x, ops.cast(positions, "int32")[:, :, None], axis=1)
        return self._project(x)

    def call(self, inputs, training=False):
        hidden, padding_mask = self.encode(inputs["source_ids"], training=training)
        return {
            "logits": self.decode(inputs["decoder_ids"], hidden, padding_mask, training=training),
            "length_logits": self.length_logits(hidden, padding_mask),
        }


@registry.register("student", "cmlm_transformer")
class CMLMTransformer(ParallelTransformerDecoder, TransformerSeq2Seq):
    """The CMLM Transformer: :class:`~tfkd.models.TransformerSeq2Seq`'s pre-norm blocks, its
    encoder reading ``[LENGTH] x`` (``[LENGTH]``: a learned vector at position 0, never masked)
    and its decoder both ways (:class:`ParallelTransformerDecoder`).

    Args:
        max_target_length: the length classifier predicts ``0..max_target_length``.
        mask_id: the target vocabulary's ``[MASK]`` id (the task passes it).
        Others: as :class:`~tfkd.models.TransformerSeq2Seq`.

    Call: ``{"source_ids": [B, S], "decoder_ids": [B, T]}`` ->
    ``{"logits": [B, T, target_vocab_size], "length_logits": [B, max_target_length + 1]}``.
    """

    config_schema = CMLMTransformerConfig

    def __init__(self, source_vocab_size, target_vocab_size, *args, max_target_length=128, mask_id=None, **kwargs):
        super().__init__(source_vocab_size, target_vocab_size, *args, **kwargs)
        # initialised and scaled as a token embedding's row
        initializer = keras.initializers.RandomNormal(stddev=self.hidden_dim**-0.5)
        self._build_length_predictor(self.hidden_dim, max_target_length, mask_id, initializer)

    def encode(self, source_ids, training=False):
        """``(hidden [B, 1 + S, H], padding_mask [B, 1 + S])`` of ``[LENGTH] x``."""
        scale = ops.cast(self.hidden_dim**0.5, self.source_embedding.compute_dtype)
        tokens = self.source_embedding(source_ids) * scale
        length = ops.cast(self.length_embedding, tokens.dtype)[None, None, :] * scale
        x = ops.concatenate([ops.repeat(length, ops.shape(tokens)[0], axis=0), tokens], axis=1)
        x = self.embedding_dropout(x + self.position_encoding(x), training=training)
        padding_mask = ops.concatenate(
            [ops.ones_like(source_ids[:, :1], dtype="bool"), ops.not_equal(source_ids, self.pad_id)], axis=1
        )
        for block in self.encoder_blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        return self.encoder_norm(x), padding_mask

    def get_config(self):
        return {**super().get_config(), "max_target_length": self.max_target_length, "mask_id": self.mask_id}
