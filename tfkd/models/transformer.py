"""The Transformer encoder-decoder student, built from keras-hub blocks."""

import keras
import keras_hub
from keras import ops

from tfkd import registry
from tfkd.layers import build_layer
from tfkd.layers.precision import reverse_projection_in_compute_dtype
from tfkd.models.abilities import IncrementalDecoding, PositionalRange, SourceEmbedding
from tfkd.models.configs import TransformerConfig


@registry.register("student", "transformer")
class TransformerSeq2Seq(SourceEmbedding, IncrementalDecoding, PositionalRange, keras.Model):
    """A pre-norm Transformer encoder-decoder (Vaswani et al.) with sinusoidal positions.

    The forward pieces are public so decoders (greedy, beam, Mask-Predict) drive them:
    ``encode(source_ids) -> (hidden, padding_mask)`` and
    ``decode(decoder_ids, hidden, padding_mask) -> logits``.

    Args:
        source_vocab_size: size of the source vocabulary.
        target_vocab_size: size of the target vocabulary.
        encoder_layers: number of encoder blocks.
        decoder_layers: number of decoder blocks.
        hidden_dim: model width.
        intermediate_dim: feed-forward width.
        num_heads: attention heads.
        dropout: dropout rate on embeddings, attention and feed-forward.
        max_length: longest sequence the position encoding is used for.
        tie_embeddings: share the target embedding with the output projection.
        share_embeddings: one embedding for source and target (needs a shared vocabulary).
        encoder_layer: ``{"kind": name, **kwargs}`` of a registered encoder layer.
        decoder_layer: ``{"kind": name, **kwargs}`` of a registered decoder layer.
        pad_id: the padding token id.

    Example:
    >>> model = tfkd.models.TransformerSeq2Seq(100, 100, encoder_layers=1, decoder_layers=1,
    ...     hidden_dim=16, intermediate_dim=32, num_heads=2)
    >>> logits = model({"source_ids": src, "decoder_ids": dec})
    """

    config_schema = TransformerConfig

    def __init__(
        self,
        source_vocab_size,
        target_vocab_size,
        encoder_layers=3,
        decoder_layers=3,
        hidden_dim=256,
        intermediate_dim=1024,
        num_heads=4,
        dropout=0.1,
        max_length=256,
        tie_embeddings=True,
        share_embeddings=False,
        encoder_layer=None,
        decoder_layer=None,
        pad_id=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if share_embeddings and source_vocab_size != target_vocab_size:
            raise ValueError(
                "share_embeddings needs one vocabulary for source and target. Received: "
                f"source_vocab_size={source_vocab_size}, target_vocab_size={target_vocab_size}"
            )
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.max_length = max_length
        self.tie_embeddings = tie_embeddings
        self.share_embeddings = share_embeddings
        self.encoder_layer = dict(encoder_layer or {"kind": "transformer_encoder"})
        self.decoder_layer = dict(decoder_layer or {"kind": "transformer_decoder"})
        self.pad_id = pad_id

        init = keras.initializers.RandomNormal(stddev=hidden_dim**-0.5)
        self.target_embedding = keras_hub.layers.ReversibleEmbedding(
            target_vocab_size,
            hidden_dim,
            tie_weights=tie_embeddings,
            embeddings_initializer=init,
            name="target_embedding",
        )
        reverse_projection_in_compute_dtype(self.target_embedding)
        if share_embeddings:
            self.source_embedding = self.target_embedding
        else:
            # reversible, so a method can tie an output layer to it (a source-side MLM head)
            self.source_embedding = keras_hub.layers.ReversibleEmbedding(
                source_vocab_size, hidden_dim, tie_weights=True, embeddings_initializer=init, name="source_embedding"
            )
        self.position_encoding = keras_hub.layers.SinePositionEncoding(name="position_encoding")
        self.embedding_dropout = keras.layers.Dropout(dropout, name="embedding_dropout")
        block_defaults = {  # keys: layer_arguments
            "hidden_dim": hidden_dim,
            "intermediate_dim": intermediate_dim,
            "num_heads": num_heads,
            "dropout": dropout,
            "normalize_first": True,
        }
        self.encoder_blocks = [
            build_layer("encoder_layer", self.encoder_layer, block_defaults, f"encoder_{i}")
            for i in range(encoder_layers)
        ]
        self.decoder_blocks = [
            build_layer("decoder_layer", self.decoder_layer, block_defaults, f"decoder_{i}")
            for i in range(decoder_layers)
        ]
        self.encoder_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_norm")
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm")
        if not tie_embeddings:
            self.output_projection = keras.layers.Dense(target_vocab_size, name="output_projection")

    def _embed(self, embedding, token_ids, training):
        x = embedding(token_ids) * ops.cast(self.hidden_dim**0.5, embedding.compute_dtype)
        x = x + self.position_encoding(x)
        return self.embedding_dropout(x, training=training)

    def encode(self, source_ids, training=False):
        padding_mask = ops.not_equal(source_ids, self.pad_id)
        x = self._embed(self.source_embedding, source_ids, training)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        return self.encoder_norm(x), padding_mask

    def decode(self, decoder_ids, encoder_hidden, encoder_padding_mask, training=False):
        return self._project(self._decoder_states(decoder_ids, encoder_hidden, encoder_padding_mask, training))

    def _decoder_states(self, decoder_ids, encoder_hidden, encoder_padding_mask, training, **block_options):
        """The decoder's normalised output ``[B, T, H]``; ``block_options`` go to every block
        (``use_causal_mask=False``: a decoder that reads the whole target)."""
        x = self._embed(self.target_embedding, decoder_ids, training)
        decoder_padding_mask = ops.not_equal(decoder_ids, self.pad_id)
        for block in self.decoder_blocks:
            x = block(
                x,
                encoder_hidden,
                decoder_padding_mask=decoder_padding_mask,
                encoder_padding_mask=encoder_padding_mask,
                training=training,
                **block_options,
            )
        return self.decoder_norm(x)

    def _project(self, x):
        """Logits over the target vocabulary of decoder states ``x``."""
        if self.tie_embeddings:
            return self.target_embedding(x, reverse=True)
        return self.output_projection(x)

    # ------------------------------------------------------------------ incremental decoding

    def supports_incremental_decoding(self):
        """True when every decoder block is keras-hub's (which has key/value caches)."""
        return all(isinstance(b, keras_hub.layers.TransformerDecoder) for b in self.decoder_blocks)

    def _decode_cached(self, token_ids, index, encoder_hidden, encoder_padding_mask, state, first):
        x = self.target_embedding(token_ids[:, None]) * ops.cast(
            self.hidden_dim**0.5, self.target_embedding.compute_dtype
        )
        x = x + ops.take(state["fixed"]["positions"], index, axis=0)
        self_caches, cross_caches = [], []
        for i, block in enumerate(self.decoder_blocks):
            x, self_cache, cross_cache = block(
                x,
                encoder_hidden,
                encoder_padding_mask=encoder_padding_mask,
                self_attention_cache=state["self"][i],
                self_attention_cache_update_index=index,
                cross_attention_cache=state["shared"]["cross"][i],
                cross_attention_cache_update_index=0 if first else None,
            )
            self_caches.append(self_cache)
            cross_caches.append(cross_cache)
        logits = self._project(self.decoder_norm(x)[:, 0])
        return logits, {
            "self": self_caches,
            "shared": {"cross": cross_caches},
            "fixed": state["fixed"],
        }

    def decode_first(self, token_ids, encoder_hidden, encoder_padding_mask, max_length, grow=True):
        """Logits for position 0 given ``token_ids`` ``[B]`` (BOS), and the decoding state:
        per-layer self-attention caches of the positions decoded so far (one here; with
        ``grow`` each step adds one, so a step attends over and a beam reorders only the
        prefix; without it, for XLA's fixed shapes, a buffer of ``max_length + 1``), under
        ``"shared"`` (the same for every hypothesis of a sentence, so beams never reorder it,
        see :mod:`tfkd.decoding`) the encoder's cross-attention keys/values, computed once
        here, and under ``"fixed"`` (the same for every row) the position encodings of every
        step."""
        batch = ops.shape(encoder_hidden)[0]
        source_length = ops.shape(encoder_hidden)[1]
        head_dim = self.hidden_dim // self.num_heads
        dtype = self.target_embedding.compute_dtype
        state = {
            "self": [
                ops.zeros((batch, 2, 1 if grow else max_length + 1, self.num_heads, head_dim), dtype)
                for _ in self.decoder_blocks
            ],
            "shared": {
                "cross": [
                    ops.zeros((batch, 2, source_length, self.num_heads, head_dim), dtype) for _ in self.decoder_blocks
                ]
            },
            "fixed": {"positions": self.position_encoding(ops.zeros((1, max_length + 1, self.hidden_dim), dtype))[0]},
        }
        return self._decode_cached(token_ids, 0, encoder_hidden, encoder_padding_mask, state, first=True)

    def decode_next(self, token_ids, index, encoder_hidden, encoder_padding_mask, state, grow=True):
        """Logits ``[B, V]`` for position ``index`` given the token at ``index`` and the state
        (with ``grow``, whose self-attention caches hold positions ``0 .. index - 1`` and gain
        ``index``; without, a buffer :meth:`decode_first` allocated whole)."""
        if grow:
            grown = [ops.concatenate([cache, ops.zeros_like(cache[:, :, :1])], axis=2) for cache in state["self"]]
            state = {**state, "self": grown}
        return self._decode_cached(token_ids, index, encoder_hidden, encoder_padding_mask, state, first=False)

    def call(self, inputs, training=False):
        hidden, mask = self.encode(inputs["source_ids"], training=training)
        return self.decode(inputs["decoder_ids"], hidden, mask, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "source_vocab_size": self.source_vocab_size,
                "target_vocab_size": self.target_vocab_size,
                "encoder_layers": self.encoder_layers,
                "decoder_layers": self.decoder_layers,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "max_length": self.max_length,
                "tie_embeddings": self.tie_embeddings,
                "share_embeddings": self.share_embeddings,
                "encoder_layer": self.encoder_layer,
                "decoder_layer": self.decoder_layer,
                "pad_id": self.pad_id,
            }
        )
        return config
