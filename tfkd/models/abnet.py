"""AB-Net students (Guo et al. 2020, ``abnet.txt``): pretrained BERTs joined by adapters.

- :class:`ABNet` (``student.kind: abnet``): a source BERT as encoder and a target BERT as a
  bidirectional decoder, with a :class:`~tfkd.layers.adapters.BottleneckAdapter` after each of
  the top source-BERT layers and a :class:`~tfkd.layers.adapters.CrossAttentionAdapter` after
  each of the top target-BERT layers; a ``[LENGTH]`` position predicts the target length and
  Mask-Predict decodes (``decoding = "parallel"``).
- :class:`ABNetEnc` (``student.kind: abnet_enc``): the source BERT with adapters and an
  autoregressive Transformer decoder trained from scratch, driven by greedy/beam search like
  :class:`~tfkd.models.TransformerSeq2Seq` (``decoding = "autoregressive"``).
- :class:`ABNetEncParallel` (``student.kind: abnet_enc_parallel``): the same encoder with a
  bidirectional Transformer decoder from scratch and a ``[LENGTH]`` predictor, decoded by
  Mask-Predict (:class:`~tfkd.models.cmlm_transformer.ParallelTransformerDecoder`).

Both run the BERTs' own keras-hub layers (embeddings, ``transformer_layers``) with the
adapters in between; the BERT weights are frozen (``trainable = False``) unless
``adapters.train`` is ``all`` (the paper's full fine-tuning ablation). Token ids are the BERTs'
own (the run's vocabularies are their ``vocab.txt``); inputs are right-padded with ``pad_id``
and carry no ``[CLS]``/``[SEP]``: the models frame them as BERT expects.

:mod:`tfkd.models.adapter_weights` writes and reads what trained (the adapters and the other
trainable weights) in one small file, rebuilt on top of the base checkpoints.
"""

import keras
import keras_hub
from keras import ops

from tfkd import registry
from tfkd.layers import build_layer
from tfkd.layers.precision import masked_lm_head_in_float32, reverse_projection_in_compute_dtype
from tfkd.models.abilities import AdapterStudent, ParallelDecoding
from tfkd.models.cmlm_transformer import ParallelTransformerDecoder
from tfkd.models.configs import ABNetConfig, ABNetEncConfig, ABNetEncParallelConfig, AdapterSettings
from tfkd.models.transformer import TransformerSeq2Seq
from tfkd.teachers.checkpoints import bert_embeddings


def _bert_initializer():
    return keras.initializers.TruncatedNormal(stddev=0.02)  # keras-hub's bert_kernel_initializer


# ----------------------------------------------------------------------------- checkpoints


def _load_bert(checkpoint, key, with_head=False):
    """``(backbone, masked-LM head or None, tokenizer)`` of ``checkpoint``. The head is the
    checkpoint's when it is a keras-hub ``BertMaskedLM`` preset, else a fresh one built as
    ``BertMaskedLM`` builds it (tied to the token embedding). The pooler, unused, is frozen."""
    from tfkd.teachers.checkpoints import from_checkpoint, has_masked_lm_head, resolve_checkpoint

    handle = resolve_checkpoint(checkpoint, key)
    head = None
    if with_head and has_masked_lm_head(handle):
        masked_lm = from_checkpoint(
            lambda h: keras_hub.models.BertMaskedLM.from_preset(h, preprocessor=None), checkpoint, key
        )
        backbone, head = masked_lm.backbone, masked_lm.masked_lm_head
    else:
        backbone = from_checkpoint(keras_hub.models.BertBackbone.from_preset, checkpoint, key)
        if with_head:
            head = keras_hub.layers.MaskedLMHead(
                vocabulary_size=backbone.vocabulary_size,
                token_embedding=backbone.token_embedding,
                intermediate_activation="gelu",
                kernel_initializer=_bert_initializer(),
                name="mlm_head",
            )
    if head is not None:
        masked_lm_head_in_float32(head)
    backbone.pooled_dense.trainable = False
    return backbone, head, from_checkpoint(_load_tokenizer, checkpoint, key)


def _load_tokenizer(handle):
    """The checkpoint's tokenizer (for its special token ids). When Keras deserializes a
    student (``keras.saving.deserialize_keras_object``, safe mode), keras-hub refuses a
    vocabulary file from outside a ``.keras`` archive; the checkpoint here is the one the
    student's config names, loaded as when the student was first built."""
    from keras.src.saving.serialization_lib import SafeModeScope

    with SafeModeScope(None):  # the state outside any deserialization
        return keras_hub.tokenizers.BertTokenizer.from_preset(handle)


def _check_vocabulary(size, backbone, side, key):
    if size != backbone.vocabulary_size:
        raise ValueError(
            f"{key}: the run's {side} vocabulary has {size} tokens but the BERT has {backbone.vocabulary_size}; "
            f"the student reads the BERT's own token ids, so the {side} tokenizer must be the checkpoint's "
            f"full vocab.txt"
        )


def _adapter_count(setting, num_layers, key):
    if setting == "all":
        return num_layers
    if setting > num_layers:
        raise ValueError(f"{key}: {setting} layers with adapters, but the BERT has only {num_layers}")
    return setting


# ----------------------------------------------------------------------------- BERT forward


def _frame(token_ids, first_id, last_id, pad_id):
    """``[first] ids [last]`` for right-padded ``token_ids`` ``[B, T]``: ids ``[B, T + 2]`` and
    their padding mask (true at the framed positions)."""
    token_ids = ops.cast(token_ids, "int32")
    lengths = ops.sum(ops.cast(ops.not_equal(token_ids, pad_id), "int32"), axis=1, keepdims=True)
    edge = ops.ones_like(token_ids[:, :1])
    framed = ops.concatenate([edge * first_id, token_ids, edge * pad_id], axis=1)
    positions = ops.expand_dims(ops.arange(ops.shape(framed)[1], dtype="int32"), 0)
    framed = ops.where(ops.equal(positions, lengths + 1), ops.full_like(framed, last_id), framed)
    return framed, ops.less_equal(positions, lengths + 1)


def _bert_layers(backbone, x, padding_mask, adapters, training, **adapter_inputs):
    """The backbone's transformer layers (bidirectional, padding mask only), each of the top
    ``len(adapters)`` followed by its adapter (called with ``adapter_inputs``)."""
    first = len(backbone.transformer_layers) - len(adapters)
    for i, layer in enumerate(backbone.transformer_layers):
        x = layer(x, padding_mask=padding_mask, training=training)
        if i >= first:
            x = adapters[i - first](x, **adapter_inputs, training=training)
    return x


class _SourceBert(AdapterStudent):
    """The source side both students share: the source BERT with encoder adapters after its
    top ``adapters.encoder_layers`` layers."""

    def _build_source(self, source_bert, source_vocab_size, settings):
        self.source_backbone, _, tokenizer = _load_bert(source_bert, "student.source_bert")
        _check_vocabulary(source_vocab_size, self.source_backbone, "source", "student.source_bert")
        self.source_cls_id = int(tokenizer.cls_token_id)
        self.source_sep_id = int(tokenizer.sep_token_id)
        num_layers = len(self.source_backbone.transformer_layers)
        count = _adapter_count(settings.encoder_layers, num_layers, "student.adapters.encoder_layers")
        defaults = {
            "hidden_dim": self.source_backbone.hidden_dim,
            "adapter_dim": settings.encoder_dim,
            "dropout": settings.dropout,
        }
        self.encoder_adapter_indices = list(range(num_layers - count, num_layers))
        self.encoder_adapters = [
            build_layer("adapter", settings.encoder_adapter.model_dump(), defaults, f"encoder_adapter_{i}")
            for i in self.encoder_adapter_indices
        ]
        if settings.frozen:
            self.source_backbone.trainable = False

    def _encode_source(self, source_ids, training, first_id, first_vector=None):
        framed, padding_mask = _frame(source_ids, first_id, self.source_sep_id, self.pad_id)
        x = bert_embeddings(self.source_backbone, framed, training=training, first_vector=first_vector)
        x = _bert_layers(self.source_backbone, x, padding_mask, self.encoder_adapters, training)
        return x, padding_mask

    def backbones(self):
        """The pretrained BERTs inside the student."""
        return [self.source_backbone]

    def save_adapters(self, path):
        """:func:`~tfkd.models.adapter_weights.save_adapters` of this student (what ``tfkd
        export --format adapters`` writes)."""
        from tfkd.models.adapter_weights import save_adapters

        save_adapters(self, path)


def _settings(adapters):
    # kept as the (frozen) pydantic object: Keras would track a dict attribute, and copying a
    # tracked dict copies the model
    if isinstance(adapters, AdapterSettings):
        return adapters
    return AdapterSettings.model_validate(dict(adapters or {}))


# ----------------------------------------------------------------------------- AB-Net


@registry.register("student", "abnet")
class ABNet(_SourceBert, ParallelDecoding, keras.Model):
    """AB-Net: frozen source and target BERTs joined by adapters, decoded in parallel.

    The encoder reads ``[LENGTH] x [SEP]`` (``[LENGTH]``: a learned vector in place of the
    token embedding at position 0) through the source BERT with a bottleneck adapter after each
    of its top ``adapters.encoder_layers`` layers (eqs. 4-5); ``length_logits`` predicts the
    target length from the ``[LENGTH]`` position. The decoder reads ``[CLS] y [SEP]`` (``y``:
    target tokens, some ``[MASK]``) through the target BERT, bidirectionally, with a
    cross-attention adapter over the encoder output after each of its top
    ``adapters.decoder_layers`` layers (eq. 6), then the target BERT's masked-LM head (tied to
    its token embedding; dense, LayerNorm and bias train) at every target position.

    Args:
        source_vocab_size: size of the source vocabulary (must be the source BERT's).
        target_vocab_size: size of the target vocabulary (must be the target BERT's).
        source_bert: the source checkpoint: a keras-hub preset, a local folder,
            ``package:<module>/<subdir>``, or a URL keras-hub reads (``hf://...``).
        target_bert: the target checkpoint, likewise.
        adapters: :class:`~tfkd.models.configs.AdapterSettings` or its dict (what trains,
            where the adapters go, their widths and kinds); kept as ``adapter_settings``.
        max_target_length: the length classifier predicts ``0..max_target_length``.
        pad_id: the padding id of ``source_ids`` and ``decoder_ids``.

    Call: ``{"source_ids": [B, S], "decoder_ids": [B, T]}`` ->
    ``{"logits": [B, T, target_vocab_size], "length_logits": [B, max_target_length + 1]}``.
    """

    config_schema = ABNetConfig

    def __init__(
        self,
        source_vocab_size,
        target_vocab_size,
        source_bert,
        target_bert,
        adapters=None,
        max_target_length=128,
        pad_id=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        settings = _settings(adapters)
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.source_bert = source_bert
        self.target_bert = target_bert
        self.adapter_settings = settings
        self.max_target_length = max_target_length
        self.pad_id = pad_id

        self._build_source(source_bert, source_vocab_size, settings)
        self.target_backbone, head, tokenizer = _load_bert(target_bert, "student.target_bert", with_head=True)
        _check_vocabulary(target_vocab_size, self.target_backbone, "target", "student.target_bert")
        self.cls_id = int(tokenizer.cls_token_id)
        self.sep_id = int(tokenizer.sep_token_id)
        self.mask_id = int(tokenizer.mask_token_id)
        self.hidden_dim = self.target_backbone.hidden_dim
        if settings.frozen:
            self.target_backbone.trainable = False  # the head's tied embedding with it

        num_layers = len(self.target_backbone.transformer_layers)
        count = _adapter_count(settings.decoder_layers, num_layers, "student.adapters.decoder_layers")
        defaults = {
            "hidden_dim": self.hidden_dim,
            "num_heads": settings.decoder_heads or self.target_backbone.num_heads,
            "dropout": settings.dropout,
        }
        self.decoder_adapter_indices = list(range(num_layers - count, num_layers))
        self.decoder_adapters = [
            build_layer("adapter", settings.decoder_adapter.model_dump(), defaults, f"decoder_adapter_{i}")
            for i in self.decoder_adapter_indices
        ]
        self.length_embedding = self.add_weight(
            shape=(self.source_backbone.hidden_dim,), initializer=_bert_initializer(), name="length_embedding"
        )
        self.length_classifier = keras.layers.Dense(
            max_target_length + 1, kernel_initializer=_bert_initializer(), name="length_classifier"
        )
        self.output_head = head

    def backbones(self):
        return [self.source_backbone, self.target_backbone]

    def adapter_layers(self):
        """The adapters, bottom to top: encoder's, then decoder's."""
        return [*self.encoder_adapters, *self.decoder_adapters]

    def encode(self, source_ids, training=False):
        """``(hidden [B, 1 + S + 1, H], padding_mask [B, 1 + S + 1])`` of ``[LENGTH] x [SEP]``."""
        return self._encode_source(source_ids, training, self.source_cls_id, first_vector=self.length_embedding)

    def length_logits(self, hidden, padding_mask=None):
        """Logits ``[B, max_target_length + 1]`` of the target length, from ``[LENGTH]``."""
        return self.length_classifier(hidden[:, 0])

    def decode(self, decoder_ids, encoder_hidden, encoder_padding_mask, training=False, positions=None):
        """Logits ``[B, T, V]`` at every position of ``decoder_ids`` ``[B, T]``, or ``[B, P, V]``
        at ``positions`` ``[B, P]`` (indices into ``decoder_ids``) only."""
        framed, padding_mask = _frame(decoder_ids, self.cls_id, self.sep_id, self.pad_id)
        x = bert_embeddings(self.target_backbone, framed, training=training)
        x = _bert_layers(
            self.target_backbone,
            x,
            padding_mask,
            self.decoder_adapters,
            training,
            encoder_sequence=encoder_hidden,
            encoder_padding_mask=encoder_padding_mask,
            decoder_padding_mask=padding_mask,
        )
        if positions is None:
            length = ops.shape(decoder_ids)[1]
            positions = ops.zeros_like(ops.cast(decoder_ids, "int32")) + ops.arange(length, dtype="int32")
        return self.output_head(x, mask_positions=ops.cast(positions, "int32") + 1)  # after [CLS]

    def call(self, inputs, training=False):
        hidden, padding_mask = self.encode(inputs["source_ids"], training=training)
        return {
            "logits": self.decode(inputs["decoder_ids"], hidden, padding_mask, training=training),
            "length_logits": self.length_logits(hidden, padding_mask),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "source_vocab_size": self.source_vocab_size,
                "target_vocab_size": self.target_vocab_size,
                "source_bert": self.source_bert,
                "target_bert": self.target_bert,
                **dict(adapters=self.adapter_settings.model_dump()),  # the spec's student.adapters
                "max_target_length": self.max_target_length,
                "pad_id": self.pad_id,
            }
        )
        return config


# ----------------------------------------------------------------------------- AB-Net-Enc


@registry.register("student", "abnet_enc")
class ABNetEnc(_SourceBert, TransformerSeq2Seq):
    """AB-Net-Enc: the source BERT with bottleneck adapters as encoder (reading
    ``[CLS] x [SEP]``) and an autoregressive pre-norm Transformer decoder trained from scratch.

    The decoder and its decoding interface (``decode``, ``supports_incremental_decoding``,
    ``decode_first``, ``decode_next``, ``call`` -> logits) are
    :class:`~tfkd.models.TransformerSeq2Seq`'s, so greedy and beam search drive it; only the
    encoder differs. ``hidden_dim`` is the decoder's width (its cross-attention reads the
    BERT's hidden size).

    Args:
        source_vocab_size: size of the source vocabulary (must be the source BERT's).
        target_vocab_size: size of the target vocabulary.
        source_bert: the source checkpoint (see :class:`ABNet`).
        adapters: :class:`~tfkd.models.configs.AdapterSettings` or its dict (its ``decoder_*``
            settings do not apply); kept as ``adapter_settings``.
        decoder_layers, hidden_dim, intermediate_dim, num_heads, dropout, max_length,
        tie_embeddings, decoder_layer: the decoder, as in ``TransformerSeq2Seq``.
        pad_id: the padding id.
    """

    config_schema = ABNetEncConfig
    decoding = "autoregressive"

    def __init__(
        self,
        source_vocab_size,
        target_vocab_size,
        source_bert,
        adapters=None,
        decoder_layers=3,
        hidden_dim=256,
        intermediate_dim=1024,
        num_heads=4,
        dropout=0.1,
        max_length=256,
        tie_embeddings=True,
        decoder_layer=None,
        pad_id=0,
        **kwargs,
    ):
        # TransformerSeq2Seq.__init__ would build a Transformer encoder: build only its decoder
        keras.Model.__init__(self, **kwargs)
        settings = _settings(adapters)
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.source_bert = source_bert
        self.adapter_settings = settings
        self.decoder_layers = decoder_layers
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.max_length = max_length
        self.tie_embeddings = tie_embeddings
        self.share_embeddings = False
        self.decoder_layer = dict(decoder_layer or {"kind": "transformer_decoder"})
        self.pad_id = pad_id

        self._build_source(source_bert, source_vocab_size, settings)
        # the decoder of TransformerSeq2Seq (same attribute names: its decode methods use them)
        init = keras.initializers.RandomNormal(stddev=hidden_dim**-0.5)
        self.target_embedding = keras_hub.layers.ReversibleEmbedding(
            target_vocab_size,
            hidden_dim,
            tie_weights=tie_embeddings,
            embeddings_initializer=init,
            name="target_embedding",
        )
        reverse_projection_in_compute_dtype(self.target_embedding)
        self.position_encoding = keras_hub.layers.SinePositionEncoding(name="position_encoding")
        self.embedding_dropout = keras.layers.Dropout(dropout, name="embedding_dropout")
        block_defaults = {
            "hidden_dim": hidden_dim,
            "intermediate_dim": intermediate_dim,
            "num_heads": num_heads,
            "dropout": dropout,
            "normalize_first": True,
        }
        self.decoder_blocks = [
            build_layer("decoder_layer", self.decoder_layer, block_defaults, f"decoder_{i}")
            for i in range(decoder_layers)
        ]
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm")
        if not tie_embeddings:
            self.output_projection = keras.layers.Dense(target_vocab_size, name="output_projection")

    def adapter_layers(self):
        """The encoder adapters, bottom to top."""
        return list(self.encoder_adapters)

    def encode(self, source_ids, training=False):
        """``(hidden [B, S + 2, H_bert], padding_mask [B, S + 2])`` of ``[CLS] x [SEP]``."""
        return self._encode_source(source_ids, training, self.source_cls_id)

    def get_config(self):
        config = keras.Model.get_config(self)
        config.update(
            {
                "source_vocab_size": self.source_vocab_size,
                "target_vocab_size": self.target_vocab_size,
                "source_bert": self.source_bert,
                **dict(adapters=self.adapter_settings.model_dump()),  # the spec's student.adapters
                "decoder_layers": self.decoder_layers,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "max_length": self.max_length,
                "tie_embeddings": self.tie_embeddings,
                "decoder_layer": self.decoder_layer,
                "pad_id": self.pad_id,
            }
        )
        return config


@registry.register("student", "abnet_enc_parallel")
class ABNetEncParallel(ParallelTransformerDecoder, ABNetEnc):
    """AB-Net-Enc decoded in parallel (abnet.txt Table 1, "AB-Net-Enc" under Mask-Predict): the
    source BERT with bottleneck adapters reading ``[LENGTH] x [SEP]`` (``[LENGTH]`` a learned
    vector in place of ``[CLS]``, as in :class:`ABNet`) and a bidirectional Transformer decoder
    trained from scratch (:class:`~tfkd.models.cmlm_transformer.ParallelTransformerDecoder`), trained by the
    conditional MLM and length losses and decoded by Mask-Predict.

    Args:
        max_target_length: the length classifier predicts ``0..max_target_length``.
        mask_id: the target vocabulary's ``[MASK]`` id (the task passes it).
        Others: as :class:`ABNetEnc`.

    Call: ``{"source_ids": [B, S], "decoder_ids": [B, T]}`` ->
    ``{"logits": [B, T, target_vocab_size], "length_logits": [B, max_target_length + 1]}``.
    """

    config_schema = ABNetEncParallelConfig
    decoding = "parallel"

    def __init__(self, source_vocab_size, target_vocab_size, *args, max_target_length=128, mask_id=None, **kwargs):
        super().__init__(source_vocab_size, target_vocab_size, *args, **kwargs)
        width = self.source_backbone.hidden_dim
        self._build_length_predictor(width, max_target_length, mask_id, _bert_initializer())

    def encode(self, source_ids, training=False):
        """``(hidden [B, 1 + S + 1, H_bert], padding_mask)`` of ``[LENGTH] x [SEP]``."""
        return self._encode_source(source_ids, training, self.source_cls_id, first_vector=self.length_embedding)

    def get_config(self):
        return {**super().get_config(), "max_target_length": self.max_target_length, "mask_id": self.mask_id}
