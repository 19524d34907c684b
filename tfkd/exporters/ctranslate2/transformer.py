"""The Transformer student's Keras weights as a CTranslate2 ``TransformerSpec``, written by
CTranslate2's own converter.

The student (:class:`tfkd.models.TransformerSeq2Seq`) is a pre-norm Transformer with final
layer norms, ReLU feed-forward blocks, embeddings scaled by ``sqrt(hidden_dim)`` and keras-hub's
sinusoidal positions (sines and cosines interleaved, where CTranslate2's built-in encoding puts
them in two halves): the positions are given to CTranslate2 as a table, the student's own, so
both compute the same encodings. keras-hub's attention keeps query, key and value projections
of shape ``[hidden, heads, head_dim]``; CTranslate2 wants ``[out, in]`` matrices, fused
(self-attention: query+key+value; cross-attention: key+value).
"""

import keras_hub
import numpy as np

from tfkd.errors import StageError

LAYER_NORM_EPSILON = 1e-5  # keras-hub's blocks and the student's final norms


def convert(spec, path, quantization):
    """Write a filled CTranslate2 model ``spec`` as the model folder ``path`` with CTranslate2's
    converter (``quantization``: one of CTranslate2's weight types; None: float32)."""
    from ctranslate2.converters.converter import Converter

    class SpecConverter(Converter):
        def _load(self):
            return spec

    SpecConverter().convert(path, quantization=quantization or "float32", force=True)


def transformer_spec(student, source_tokenizer, target_tokenizer):
    """A filled ``ctranslate2.specs.TransformerSpec`` of ``student``."""
    from ctranslate2.specs import TransformerDecoderSpec, TransformerEncoderSpec, TransformerSpec

    from tfkd.data import BOS, EOS, UNK
    from tfkd.models import TransformerSeq2Seq

    if not isinstance(student, TransformerSeq2Seq):
        raise StageError(f"export.format ctranslate2: a {type(student).__name__} student is not a TransformerSeq2Seq")
    blocks = [*student.encoder_blocks, *student.decoder_blocks]
    kinds = (keras_hub.layers.TransformerEncoder, keras_hub.layers.TransformerDecoder)
    custom = [type(b).__name__ for b in blocks if type(b) not in kinds]
    if custom:
        raise StageError(
            f"export.format ctranslate2: the student's {custom[0]} blocks are not keras-hub's "
            "TransformerEncoder/TransformerDecoder, which CTranslate2's Transformer mirrors; export "
            "it with format saved_model"
        )
    encoder = TransformerEncoderSpec(student.encoder_layers, student.num_heads, pre_norm=True)
    decoder = TransformerDecoderSpec(student.decoder_layers, student.num_heads, pre_norm=True)
    spec = TransformerSpec(encoder, decoder)
    positions = position_table(student)
    _embedding(encoder.embeddings[0], student.source_embedding)
    encoder.position_encodings.encodings = positions
    for layer_spec, block in zip(encoder.layer, student.encoder_blocks):
        _attention(layer_spec.self_attention, block._self_attention_layer, block._self_attention_layer_norm, True)
        _feed_forward(layer_spec.ffn, block)
    _layer_norm(encoder.layer_norm, student.encoder_norm)

    _embedding(decoder.embeddings, student.target_embedding)
    decoder.position_encodings.encodings = positions
    for layer_spec, block in zip(decoder.layer, student.decoder_blocks):
        _attention(layer_spec.self_attention, block._self_attention_layer, block._self_attention_layer_norm, True)
        _attention(layer_spec.attention, block._cross_attention_layer, block._cross_attention_layer_norm, False)
        _feed_forward(layer_spec.ffn, block)
    _layer_norm(decoder.layer_norm, student.decoder_norm)
    if student.tie_embeddings:
        decoder.projection.weight = _array(student.target_embedding.embeddings)
    else:
        decoder.projection.weight = _array(student.output_projection.kernel).T
        decoder.projection.bias = _array(student.output_projection.bias)

    spec.config.layer_norm_epsilon = LAYER_NORM_EPSILON
    spec.config.bos_token = BOS
    spec.config.eos_token = EOS
    spec.config.unk_token = UNK
    spec.config.decoder_start_token = BOS
    spec.register_source_vocabulary(vocabulary(source_tokenizer))
    spec.register_target_vocabulary(vocabulary(target_tokenizer))
    return spec


def vocabulary(tokenizer):
    """The tokenizer's tokens in id order (CTranslate2 maps tokens to ids by this list; a BPE
    tokenizer's ``get_vocabulary()`` is in its file's order, not its ids')."""
    tokens = [tokenizer.id_to_token(i) for i in range(tokenizer.vocabulary_size())]
    if len(set(tokens)) != len(tokens):
        raise StageError("export.format ctranslate2: a vocabulary with repeated tokens cannot be a CTranslate2 one")
    return tokens


def position_table(student):
    """The student's position encodings of positions ``0 .. max_length`` ``[max_length + 1, hidden]``."""
    zeros = np.zeros([1, student.max_length + 1, student.hidden_dim], np.float32)
    return _array(student.position_encoding(zeros)[0])


def _array(value):
    return np.asarray(value, np.float32)


def _embedding(spec, embedding):
    spec.weight = _array(embedding.embeddings)


def _layer_norm(spec, layer):
    spec.gamma = _array(layer.gamma)
    spec.beta = _array(layer.beta)


def _attention(spec, layer, norm, self_attention):
    hidden = layer._query_dense.kernel.shape[0]

    def projection(dense):  # [hidden, heads, head_dim] -> [heads * head_dim, hidden]
        return _array(dense.kernel).reshape(hidden, -1).T, _array(dense.bias).reshape(-1)

    query, key, value = (projection(d) for d in (layer._query_dense, layer._key_dense, layer._value_dense))
    if self_attention:
        spec.linear[0].weight = np.concatenate([query[0], key[0], value[0]])
        spec.linear[0].bias = np.concatenate([query[1], key[1], value[1]])
    else:
        spec.linear[0].weight, spec.linear[0].bias = query
        spec.linear[1].weight = np.concatenate([key[0], value[0]])
        spec.linear[1].bias = np.concatenate([key[1], value[1]])
    output = layer._output_dense  # [heads, head_dim, hidden] -> [hidden, heads * head_dim]
    spec.linear[-1].weight = _array(output.kernel).reshape(-1, hidden).T
    spec.linear[-1].bias = _array(output.bias)
    _layer_norm(spec.layer_norm, norm)


def _feed_forward(spec, block):
    spec.linear_0.weight = _array(block._feedforward_intermediate_dense.kernel).T
    spec.linear_0.bias = _array(block._feedforward_intermediate_dense.bias)
    spec.linear_1.weight = _array(block._feedforward_output_dense.kernel).T
    spec.linear_1.bias = _array(block._feedforward_output_dense.bias)
    _layer_norm(spec.layer_norm, block._feedforward_layer_norm)
