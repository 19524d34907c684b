"""Adapter layers (AB-Net eqs. 4 and 6) against NumPy references built from the layers' own
weights; masks; serialization; the arguments registered for them; users' own adapters."""

import inspect

import keras
import numpy as np
import pytest

import tfkd
from tfkd import registry
from tfkd.layers import build_layer
from tfkd.layers.adapters import BottleneckAdapter, CrossAttentionAdapter
from tfkd.testing import TestCase


def layer_norm(x, gamma, beta, epsilon):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(variance + epsilon) + beta


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference_bottleneck(layer, h):
    """eq. 4: Z = W1 LN(H); out = H + W2 ReLU(Z)."""
    ln = layer.layer_norm
    z = layer_norm(h, ln.gamma.numpy(), ln.beta.numpy(), layer.layer_norm_epsilon)
    z = z @ layer.down_projection.kernel.numpy() + layer.down_projection.bias.numpy()
    return h + np.maximum(z, 0) @ layer.up_projection.kernel.numpy() + layer.up_projection.bias.numpy()


def reference_cross_attention(layer, x, encoder, encoder_mask, decoder_mask):
    """eq. 6 with post-LN: LN(x + MHA(x, E, E)); masked scores at -1e9, as Keras masks them."""
    attention = layer.attention
    q = np.einsum("btd,dnk->btnk", x, attention.query_dense.kernel.numpy()) + attention.query_dense.bias.numpy()
    k = np.einsum("bsd,dnk->bsnk", encoder, attention.key_dense.kernel.numpy()) + attention.key_dense.bias.numpy()
    v = np.einsum("bsd,dnk->bsnk", encoder, attention.value_dense.kernel.numpy()) + attention.value_dense.bias.numpy()
    scores = np.einsum("btnk,bsnk->bnts", q, k) / np.sqrt(q.shape[-1])
    mask = decoder_mask[:, None, :, None].astype(bool) & encoder_mask[:, None, None, :].astype(bool)
    probs = softmax(np.where(mask, scores, -1e9))
    context = np.einsum("bnts,bsnk->btnk", probs, v)
    attended = (
        np.einsum("btnk,nkd->btd", context, attention.output_dense.kernel.numpy()) + attention.output_dense.bias.numpy()
    )
    ln = layer.layer_norm
    y = layer_norm(x + attended, ln.gamma.numpy(), ln.beta.numpy(), layer.layer_norm_epsilon)
    if not layer.intermediate_dim:
        return y
    # the released decoder layer's feed-forward sublayer: LN(y + W2 ReLU(W1 y))
    inner, outer, ln = layer.feed_forward_in, layer.feed_forward_out, layer.feed_forward_layer_norm
    hidden = np.maximum(y @ inner.kernel.numpy() + inner.bias.numpy(), 0)
    fed = hidden @ outer.kernel.numpy() + outer.bias.numpy()
    return layer_norm(y + fed, ln.gamma.numpy(), ln.beta.numpy(), layer.layer_norm_epsilon)


class BottleneckAdapterTest(TestCase):
    def test_matches_the_numpy_reference(self):
        keras.utils.set_random_seed(0)
        layer = BottleneckAdapter(adapter_dim=5, layer_norm_epsilon=1e-6)
        h = np.random.RandomState(0).randn(2, 4, 8).astype("float32")
        output = layer(h)
        # non-trivial LayerNorm and biases, so the reference checks where each one goes
        for weight in (
            layer.layer_norm.gamma,
            layer.layer_norm.beta,
            layer.down_projection.bias,
            layer.up_projection.bias,
        ):
            weight.assign(np.random.RandomState(1).randn(*weight.shape).astype("float32"))
        self.assertAllClose(layer(h), reference_bottleneck(layer, h), atol=1e-5)
        self.assertEqual(tuple(output.shape), (2, 4, 8))

    def test_layer_test_and_serialization(self):
        self.run_layer_test(
            BottleneckAdapter,
            {"adapter_dim": 3},
            np.random.rand(2, 5, 6).astype("float32"),
            expected_output_shape=(2, 5, 6),
        )

    def test_both_projections_start_small_and_nonzero(self):
        layer = BottleneckAdapter(adapter_dim=16)
        layer(np.zeros((1, 2, 32), "float32"))
        for dense in (layer.down_projection, layer.up_projection):
            kernel = dense.kernel.numpy()
            self.assertTrue(np.all(kernel != 0))
            self.assertLess(kernel.std(), 0.03)
        self.assertFalse(
            np.allclose(layer.down_projection.kernel.numpy()[:16, :16], layer.up_projection.kernel.numpy()[:16, :16])
        )  # not one seed reused


class CrossAttentionAdapterTest(TestCase):
    def setUp(self):
        rng = np.random.RandomState(0)
        self.x = rng.randn(2, 3, 8).astype("float32")
        self.encoder = rng.randn(2, 5, 6).astype("float32")  # another width than the decoder's
        self.encoder_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
        self.decoder_mask = np.array([[1, 1, 0], [1, 1, 1]], bool)

    def test_matches_the_numpy_reference(self):
        keras.utils.set_random_seed(1)
        layer = CrossAttentionAdapter(num_heads=2, dropout=0.0)
        output = layer(
            self.x, self.encoder, encoder_padding_mask=self.encoder_mask, decoder_padding_mask=self.decoder_mask
        )
        self.assertEqual(tuple(output.shape), (2, 3, 8))
        self.assertEqual(layer.attention.query_dense.kernel.shape, (8, 2, 4))  # key_dim = hidden / heads
        self.assertAllClose(
            output,
            reference_cross_attention(layer, self.x, self.encoder, self.encoder_mask, self.decoder_mask),
            atol=1e-5,
        )
        # without masks: every position attends to every encoder position
        ones = np.ones_like
        self.assertAllClose(
            layer(self.x, self.encoder),
            reference_cross_attention(layer, self.x, self.encoder, ones(self.encoder_mask), ones(self.decoder_mask)),
            atol=1e-5,
        )

    def test_the_feed_forward_sublayer_matches_the_numpy_reference(self):
        keras.utils.set_random_seed(2)
        layer = CrossAttentionAdapter(num_heads=2, dropout=0.0, intermediate_dim=5)
        output = layer(
            self.x, self.encoder, encoder_padding_mask=self.encoder_mask, decoder_padding_mask=self.decoder_mask
        )
        self.assertEqual(layer.feed_forward_in.kernel.shape, (8, 5))
        self.assertEqual(layer.feed_forward_out.kernel.shape, (5, 8))
        # non-trivial LayerNorms and biases, so the reference checks where each one goes
        rng = np.random.RandomState(3)
        for weight in (
            layer.feed_forward_in.bias,
            layer.feed_forward_out.bias,
            layer.feed_forward_layer_norm.gamma,
            layer.feed_forward_layer_norm.beta,
            layer.layer_norm.gamma,
        ):
            weight.assign(rng.randn(*weight.shape).astype("float32"))
        output = layer(
            self.x, self.encoder, encoder_padding_mask=self.encoder_mask, decoder_padding_mask=self.decoder_mask
        )
        expected = reference_cross_attention(layer, self.x, self.encoder, self.encoder_mask, self.decoder_mask)
        self.assertAllClose(output, expected, atol=1e-5)
        # without the sublayer the output is the attention sublayer's alone: another function
        plain = CrossAttentionAdapter(num_heads=2, dropout=0.0)
        plain(self.x, self.encoder)
        self.assertEqual(len(plain.trainable_weights), len(layer.trainable_weights) - 6)

    def test_attention_dropout_apart_from_the_output_dropout(self):
        layer = CrossAttentionAdapter(num_heads=2, dropout=0.3, attention_dropout=0.0, intermediate_dim=4)
        layer(self.x, self.encoder)
        self.assertEqual(layer.attention.dropout, 0.0)
        self.assertEqual(layer.output_dropout.rate, 0.3)
        self.assertEqual(layer.feed_forward_dropout.rate, 0.3)
        former = CrossAttentionAdapter(num_heads=2, dropout=0.3)  # unset: the attention drops at dropout
        former(self.x, self.encoder)
        self.assertEqual(former.attention.dropout, 0.3)

    def test_a_masked_encoder_position_does_not_change_the_output(self):
        layer = CrossAttentionAdapter(num_heads=2, key_dim=3)
        before = layer(self.x, self.encoder, encoder_padding_mask=self.encoder_mask)
        changed = self.encoder.copy()
        changed[0, 3:] += 10.0  # padded positions of sentence 0
        self.assertAllClose(before, layer(self.x, changed, encoder_padding_mask=self.encoder_mask), atol=1e-6)
        changed[0, 1] += 10.0  # a real one
        self.assertFalse(np.allclose(before[0], layer(self.x, changed, encoder_padding_mask=self.encoder_mask)[0]))
        # int masks work like bool ones
        self.assertAllClose(before, layer(self.x, self.encoder, encoder_padding_mask=self.encoder_mask.astype("int32")))

    def test_dropout_only_in_training(self):
        layer = CrossAttentionAdapter(num_heads=2, dropout=0.5)
        self.assertAllClose(layer(self.x, self.encoder), layer(self.x, self.encoder, training=False))
        self.assertFalse(np.allclose(layer(self.x, self.encoder), layer(self.x, self.encoder, training=True)))

    def test_layer_test_and_serialization(self):
        self.run_layer_test(
            CrossAttentionAdapter,
            {"num_heads": 2, "dropout": 0.0, "intermediate_dim": 6, "kernel_initializer": "glorot_uniform"},
            self.x,
            call_kwargs={"encoder_sequence": self.encoder, "encoder_padding_mask": self.encoder_mask},
            expected_output_shape=(2, 3, 8),
        )


@pytest.mark.parametrize("name, cls", [("bottleneck", BottleneckAdapter), ("cross_attention", CrossAttentionAdapter)])
def test_registered_adapter_arguments_match_the_constructors(name, cls):
    assert registry.lookup("adapter", name) is cls
    arguments, required, _ = registry.constructor_arguments("adapter", name)  # tfkd.layers' lists
    params = inspect.signature(cls.__init__).parameters
    named = tuple(n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
    assert arguments == named
    assert required == tuple(n for n in named if params[n].default is inspect.Parameter.empty)


@tfkd.register("adapter", "test_scaled_bottleneck")
class ScaledBottleneck(keras.layers.Layer):
    """A user's adapter: a bottleneck whose residual branch is scaled."""

    def __init__(self, adapter_dim, scale=0.5, **kwargs):
        super().__init__(**kwargs)
        self.adapter_dim = adapter_dim
        self.scale = scale
        self.inner = BottleneckAdapter(adapter_dim, name="inner")

    def call(self, inputs, training=None):
        return inputs + self.scale * (self.inner(inputs) - inputs)

    def get_config(self):
        return {**super().get_config(), "adapter_dim": self.adapter_dim, "scale": self.scale}


def test_build_layer_fills_only_the_arguments_an_adapter_declares():
    defaults = {"hidden_dim": 8, "adapter_dim": 4, "num_heads": 2, "dropout": 0.3}
    bottleneck = build_layer("adapter", {"kind": "bottleneck"}, defaults, "a")
    assert (bottleneck.adapter_dim, bottleneck.name) == (4, "a")
    cross = build_layer("adapter", {"kind": "cross_attention", "dropout": 0.0}, defaults, "c")
    assert (cross.num_heads, cross.dropout) == (2, 0.0)  # the spec's own setting wins
    # the released recipe's decoder adapter, as a spec names it: a feed-forward sublayer of 512,
    # no attention dropout
    released = {"kind": "cross_attention", "intermediate_dim": 16, "attention_dropout": 0.0}
    recipe = build_layer("adapter", released, defaults, "r")
    recipe(np.zeros((1, 2, 8), "float32"), np.zeros((1, 3, 8), "float32"))
    assert (recipe.intermediate_dim, recipe.attention.dropout, recipe.dropout) == (16, 0.0, 0.3)
    assert recipe.feed_forward_in.kernel.shape == (8, 16)
    user = build_layer("adapter", {"kind": "test_scaled_bottleneck", "scale": 0.25}, defaults, "u")
    assert isinstance(user, ScaledBottleneck) and (user.adapter_dim, user.scale) == (4, 0.25)
    x = np.random.rand(1, 3, 8).astype("float32")
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(user))
    user(x)
    revived(x)
    revived.set_weights(user.get_weights())
    np.testing.assert_allclose(revived(x), user(x), atol=1e-6)


def test_adapter_settings_check_the_adapters_a_spec_names():
    import pydantic

    from tfkd.models.configs import ABNetConfig, ABNetEncConfig

    ok = ABNetConfig(
        source_bert="s", target_bert="t", adapters={"encoder_adapter": {"kind": "test_scaled_bottleneck", "scale": 2.0}}
    )
    assert ok.model_dump()["adapters"]["encoder_adapter"] == {"kind": "test_scaled_bottleneck", "scale": 2.0}
    released = {"kind": "cross_attention", "intermediate_dim": 512, "attention_dropout": 0.0}
    config = ABNetConfig(source_bert="s", target_bert="t", adapters={"decoder_adapter": released})
    assert config.model_dump()["adapters"]["decoder_adapter"] == released
    for adapters, message in [
        ({"encoder_adapter": {"kind": "botleneck"}}, 'unknown adapter "botleneck"; did you mean "bottleneck"'),
        ({"decoder_adapter": {"kind": "cross_attention", "heads": 2}}, 'unknown argument "heads"'),
        ({"encoder_layers": 0}, "greater than 0"),
        ({"train": "everything"}, "'adapters' or 'all'"),
    ]:
        with pytest.raises(pydantic.ValidationError, match=message):
            ABNetConfig(source_bert="s", target_bert="t", adapters=adapters)
    with pytest.raises(pydantic.ValidationError, match="decoder_heads do not apply to abnet_enc"):
        ABNetEncConfig(source_bert="s", adapters={"decoder_heads": 4})
    dumped = ABNetEncConfig(source_bert="s").model_dump()
    assert ABNetEncConfig.model_validate(dumped).model_dump() == dumped  # a dumped config validates again
