"""tfkd/layers/precision.py: which products run in bfloat16 under ``mixed_bfloat16``."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tfkd.layers.precision import reverse_projection_in_compute_dtype
from tfkd.models.gpt2_lm import GPT2LM
from tfkd.models.lstm import LSTMSeq2Seq
from tfkd.models.transformer import TransformerSeq2Seq
from tfkd.precision import precision_policy

PRODUCTS = ("MatMul", "BatchMatMulV2", "Einsum")


def _operations(graph):
    yield from graph.get_operations()
    for function in graph._functions.values():
        if hasattr(function, "graph"):
            yield from _operations(function.graph)


def _transformer():
    model = TransformerSeq2Seq(
        11, 17, encoder_layers=1, decoder_layers=1, hidden_dim=8, intermediate_dim=8, num_heads=2, dropout=0.0
    )
    return model, {"source_ids": np.ones((2, 5), "int32"), "decoder_ids": np.ones((2, 4), "int32")}


def _gpt2():
    model = GPT2LM(vocabulary_size=50, num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=8, dropout=0.0)
    return model, {"token_ids": np.ones((2, 5), "int32"), "padding_mask": np.ones((2, 5), bool)}


def _lstm():
    model = LSTMSeq2Seq(11, 17, encoder_layers=1, decoder_layers=1, hidden_dim=8, embedding_dim=8, dropout=0.0)
    return model, {"source_ids": np.ones((2, 5), "int32"), "decoder_ids": np.ones((2, 4), "int32")}


STUDENTS = {
    "transformer": (_transformer, "target_embedding"),
    "gpt2": (_gpt2, "token_embedding"),
    "lstm": (_lstm, "output_projection"),
}


def _products_of_a_training_step(student, policy):
    """``{(op, dtype, name)}`` of every matrix product in the forward pass and the gradients
    of a small student's loss, built under ``policy``."""
    with precision_policy(policy):
        model, inputs = STUDENTS[student][0]()
        model(inputs)

    @tf.function
    def step(inputs):
        with tf.GradientTape() as tape:
            logits = ops.cast(model(inputs, training=True), "float32")
            loss = ops.mean(ops.logsumexp(logits, axis=-1))
        return tape.gradient(loss, model.trainable_variables)

    graph = step.get_concrete_function(inputs).graph
    return {(op.type, op.get_attr("T").name, op.name) for op in _operations(graph) if op.type in PRODUCTS}


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_every_product_of_a_mixed_bfloat16_training_step_runs_in_bfloat16(student):
    """The tied output projection (the step's largest product, forward and both gradients)
    included, the Transformer's and keras-hub's GPT-2's: Keras' embedding does not autocast
    its table, so without the helper it ran in float32 on hidden states cast up from
    bfloat16."""
    products = _products_of_a_training_step(student, "mixed_bfloat16")
    assert any(STUDENTS[student][1] in name for _, _, name in products)
    assert {dtype for _, dtype, _ in products} == {"bfloat16"}, sorted(p for p in products if p[1] != "bfloat16")


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_a_float32_step_stays_float32(student):
    products = _products_of_a_training_step(student, "float32")
    assert {dtype for _, dtype, _ in products} == {"float32"}


@pytest.mark.parametrize("policy, expected", [("mixed_bfloat16", "bfloat16"), ("float32", None)])
def test_the_reverse_projection_computes_in_the_layers_compute_dtype(policy, expected):
    """Against NumPy: the logits are the product of the bfloat16-rounded hidden states and
    table under mixed_bfloat16 (exactly, up to float32 accumulation), the float32 product
    otherwise."""
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 16)).astype("float32")
    with precision_policy(policy):
        embedding = reverse_projection_in_compute_dtype(keras.layers.ReversibleEmbedding(7, 16))
        embedding.build((None,))
    assert embedding.reverse_dtype == expected
    table = ops.convert_to_numpy(embedding.embeddings)
    logits = ops.convert_to_numpy(ops.cast(embedding(ops.convert_to_tensor(hidden), reverse=True), "float32"))
    if expected == "bfloat16":
        rounded = [ops.convert_to_numpy(ops.cast(ops.cast(a, "bfloat16"), "float32")) for a in (hidden, table)]
        reference = rounded[0] @ rounded[1].T
        np.testing.assert_allclose(logits, reference, rtol=1e-2, atol=1e-3)
        assert not np.allclose(logits, hidden @ table.T, rtol=1e-6, atol=0)
    else:
        np.testing.assert_allclose(logits, hidden @ table.T, rtol=1e-5, atol=1e-6)
