"""An LSTM encoder-decoder with attention (Luong et al., 2015), the RNN student."""

import keras
from keras import ops

from tfkd import registry
from tfkd.models.abilities import SourceEmbedding
from tfkd.models.configs import LSTMConfig


@registry.register("student", "lstm")
class LSTMSeq2Seq(SourceEmbedding, keras.Model):
    """Bidirectional LSTM encoder, LSTM decoder with dot-product attention over the encoder.

    Same interface as :class:`tfkd.models.TransformerSeq2Seq` (``encode``/``decode``), so the
    same trainers and decoders drive it; decoding re-runs the decoder on the prefix.

    Args:
        source_vocab_size: size of the source vocabulary.
        target_vocab_size: size of the target vocabulary.
        encoder_layers: stacked bidirectional LSTM layers.
        decoder_layers: stacked LSTM layers.
        hidden_dim: LSTM width (each encoder direction has ``hidden_dim // 2``).
        embedding_dim: token embedding width.
        dropout: dropout between layers.
        pad_id: the padding token id.

    Example:
    >>> model = tfkd.models.LSTMSeq2Seq(100, 100, hidden_dim=16, embedding_dim=8)
    >>> logits = model({"source_ids": src, "decoder_ids": dec})
    """

    config_schema = LSTMConfig

    def __init__(
        self,
        source_vocab_size,
        target_vocab_size,
        encoder_layers=2,
        decoder_layers=2,
        hidden_dim=256,
        embedding_dim=256,
        dropout=0.2,
        pad_id=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.hidden_dim = hidden_dim
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.pad_id = pad_id
        self.source_embedding = keras.layers.Embedding(source_vocab_size, embedding_dim, name="source_embedding")
        self.target_embedding = keras.layers.Embedding(target_vocab_size, embedding_dim, name="target_embedding")
        self.encoder_rnns = [
            keras.layers.Bidirectional(keras.layers.LSTM(hidden_dim // 2, return_sequences=True), name=f"encoder_{i}")
            for i in range(encoder_layers)
        ]
        self.decoder_rnns = [
            keras.layers.LSTM(hidden_dim, return_sequences=True, name=f"decoder_{i}") for i in range(decoder_layers)
        ]
        self.encoder_projection = keras.layers.Dense(hidden_dim, name="encoder_projection")
        self.attention = keras.layers.Attention(name="attention")
        self.attentional = keras.layers.Dense(hidden_dim, activation="tanh", name="attentional")
        self.output_projection = keras.layers.Dense(target_vocab_size, name="output_projection")
        self.dropout_layer = keras.layers.Dropout(dropout)

    def encode(self, source_ids, training=False):
        padding_mask = ops.not_equal(source_ids, self.pad_id)
        x = self.dropout_layer(self.source_embedding(source_ids), training=training)
        for rnn in self.encoder_rnns:
            x = self.dropout_layer(rnn(x, mask=padding_mask, training=training), training=training)
        return self.encoder_projection(x), padding_mask

    def decode(self, decoder_ids, encoder_hidden, encoder_padding_mask, training=False):
        x = self.dropout_layer(self.target_embedding(decoder_ids), training=training)
        for rnn in self.decoder_rnns:
            x = self.dropout_layer(rnn(x, training=training), training=training)
        context = self.attention([x, encoder_hidden], mask=[None, encoder_padding_mask])
        x = self.attentional(ops.concatenate([x, context], axis=-1))
        return self.output_projection(self.dropout_layer(x, training=training))

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
                "embedding_dim": self.embedding_dim,
                "dropout": self.dropout,
                "pad_id": self.pad_id,
            }
        )
        return config
