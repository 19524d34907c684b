"""The registry: user layers named in a spec are built and serialise like built-in ones;
methods register as instances under unique names; built-ins register where tfkd.builtins says,
with the settings they really take."""

import inspect

import keras
import numpy as np
import pytest
import user_layers  # noqa: F401  (registers gated_residual_encoder)
from helpers import reference_greedy

import tfkd
from tfkd import registry
from tfkd.methods import Method
from tfkd.models import TransformerSeq2Seq
from tfkd.testing import TestCase


class UserLayerTest(TestCase):
    def test_user_layer_passes_the_layer_test(self):
        self.run_layer_test(
            user_layers.GatedResidualEncoder,
            {"intermediate_dim": 8},
            np.random.rand(2, 5, 6).astype("float32"),
            expected_output_shape=(2, 5, 6),
        )

    def test_student_with_user_layer_round_trips(self):
        model = TransformerSeq2Seq(
            30,
            20,
            encoder_layers=2,
            decoder_layers=1,
            hidden_dim=8,
            intermediate_dim=16,
            num_heads=2,
            encoder_layer={"kind": "gated_residual_encoder", "gate_bias": 1.0},
        )
        inputs = {"source_ids": np.array([[3, 4, 5, 0]]), "decoder_ids": np.array([[2, 7, 0]])}
        logits = model(inputs)
        self.assertEqual(tuple(logits.shape), (1, 3, 20))
        self.assertIsInstance(model.encoder_blocks[0], user_layers.GatedResidualEncoder)
        self.assertEqual(model.encoder_blocks[0].intermediate_dim, 16)  # filled in by the builder
        revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
        revived(inputs)
        revived.set_weights(model.get_weights())
        self.assertAllClose(model(inputs), revived(inputs), atol=1e-5)
        self.assertIsInstance(revived.encoder_blocks[1], user_layers.GatedResidualEncoder)

    def test_builtin_student_round_trips(self):
        model = TransformerSeq2Seq(
            30,
            20,
            encoder_layers=1,
            decoder_layers=1,
            hidden_dim=8,
            intermediate_dim=16,
            num_heads=2,
            tie_embeddings=False,
        )
        model({"source_ids": np.array([[3, 4]]), "decoder_ids": np.array([[2, 7]])})
        self.run_serialization_test(model)


def test_register_rejects_wrong_base_class():
    with pytest.raises(TypeError, match="expected a subclass of keras.src.layers.layer.Layer"):
        tfkd.register("encoder_layer", "not_a_layer")(object)


def test_register_rejects_duplicate_names():
    class Another(keras.layers.Layer):
        pass

    with pytest.raises(ValueError, match='encoder_layer "gated_residual_encoder" is already registered'):
        tfkd.register("encoder_layer", "gated_residual_encoder")(Another)


def test_register_rejects_unknown_kind():
    with pytest.raises(
        ValueError,
        match=r'unknown kind "encoder_layr"; did you mean "encoder_layer"\? '
        r"Choices: adapter, decoder, decoder_layer, encoder_layer, exporter, method",
    ):
        tfkd.register("encoder_layr", "x")


def test_lookup_lists_choices():
    with pytest.raises(ValueError, match='unknown student "transfromer"; did you mean "transformer"'):
        registry.lookup("student", "transfromer")


def test_lookup_of_a_misspelt_method_lists_the_methods():
    with pytest.raises(ValueError) as error:
        registry.lookup("method", "soft_targt")
    message = str(error.value)
    assert message.startswith('unknown method "soft_targt"; did you mean "soft_target"? Choices: ')
    assert {"soft_target", "supervised"} <= set(message.split("Choices: ")[1].split(", "))


@pytest.mark.parametrize(
    "typed, expected",
    [("beem", "beam_size"), ("lenght_penalty", "length_penalty"), ("trian", "train"), ("zzz", None)],
)
def test_did_you_mean_finds_a_key_by_its_closest_word(typed, expected):
    """difflib's ratio over the whole key misses "beem" for "beam_size" (0.46); one of the
    key's words is as close as the key."""
    choices = ["algorithm", "beam_size", "length_penalty", "max_length_a", "train", "student"]
    hint = registry.did_you_mean(typed, choices)
    assert hint == (f' did you mean "{expected}"?' if expected else "")


@pytest.mark.parametrize(
    "kind, name, cls",
    [
        ("encoder_layer", "transformer_encoder", "TransformerEncoder"),
        ("decoder_layer", "transformer_decoder", "TransformerDecoder"),
    ],
)
def test_registered_block_arguments_match_keras_hub(kind, name, cls):
    """tfkd.layers registers the keras-hub constructors' arguments so specs validate without
    importing keras-hub; they must stay what keras-hub accepts."""
    import keras_hub

    assert registry.lookup(kind, name) is getattr(keras_hub.layers, cls)
    arguments, required, _ = registry.constructor_arguments(kind, name)  # the registered lists
    params = inspect.signature(getattr(keras_hub.layers, cls).__init__).parameters
    named = tuple(n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
    assert arguments == named
    assert required == tuple(n for n in named if params[n].default is inspect.Parameter.empty)


def test_every_builtin_registers_itself_where_builtins_says():
    """tfkd.builtins lists modules only; importing each registers its names with the decorator,
    and a student's class validates with the schema registered for it in tfkd.models.configs."""
    from tfkd import builtins

    for kind, modules in builtins.LAZY.items():
        for name, module in modules.items():
            entry = registry.lookup(kind, name)
            assert registry.origin(kind, name) == f"{entry.__module__}.{entry.__qualname__}"
            if kind == "student":
                assert registry.schema(kind, name) is entry.config_schema
            elif not entry.__module__.startswith("keras_hub"):
                assert entry.__module__ == module


def test_settings_registered_before_the_class_validate_and_name_what_is_missing(scratch_students):
    from tfkd.models.configs import LSTMConfig, TransformerConfig

    tfkd.register("student", "later_student", schema=LSTMConfig)  # a light module's half
    assert registry.schema("student", "later_student") is LSTMConfig and "later_student" in registry.names("student")
    with pytest.raises(
        ValueError,
        match=r'^student "later_student": its settings alone registered no student; '
        r'register it with @tfkd.register\("student", "later_student"\)$',
    ):
        registry.lookup("student", "later_student")

    @tfkd.register("student", "later_student")  # the defining module's half
    class LaterStudent(keras.Model):
        pass

    assert registry.lookup("student", "later_student") is LaterStudent
    assert registry.schema("student", "later_student") is LSTMConfig
    # another class may not take the name, nor its settings
    with pytest.raises(ValueError, match="already registered by"):
        tfkd.register("student", "later_student", schema=TransformerConfig)(type("Other", (keras.Model,), {}))
    assert registry.schema("student", "later_student") is LSTMConfig


class _Elsewhere(Method):
    name = "soft_target"


@pytest.fixture
def scratch_methods():
    """Method names a test registers, removed afterwards."""
    before = dict(registry._REGISTRY["method"])
    yield
    registry._REGISTRY["method"].clear()
    registry._REGISTRY["method"].update(before)


@pytest.fixture
def scratch_students():
    """Student names and settings a test registers, removed afterwards."""
    before = dict(registry._REGISTRY["student"]), dict(registry._SETTINGS["student"])
    yield
    for table, saved in zip((registry._REGISTRY["student"], registry._SETTINGS["student"]), before):
        table.clear()
        table.update(saved)


def test_register_method_needs_a_method_instance(scratch_methods):
    from tfkd.methods.supervised import SupervisedMethod

    for wrong in (SupervisedMethod, object()):  # the class itself, or something else
        with pytest.raises(
            TypeError,
            match=r'tfkd.register\("method", "my_method"\): expected an instance of '
            r"tfkd.methods.base.Method",
        ):
            tfkd.register("method", "my_method")(wrong)
    assert "my_method" not in registry.names("method")


def test_register_method_rejects_a_name_taken_by_another_class(scratch_methods):
    builtin = registry.lookup("method", "soft_target")
    with pytest.raises(
        ValueError,
        match=r'method "soft_target" is already registered by '
        r"tfkd.methods.soft_target.SoftTargetMethod; pick another name",
    ):
        tfkd.register("method", "soft_target")(_Elsewhere())
    assert registry.lookup("method", "soft_target") is builtin
    # a user's own name: the same class may register again (a re-imported module), another may not
    tfkd.register("method", "my_method")(_Elsewhere())
    tfkd.register("method", "my_method")(_Elsewhere())

    class Other(Method):
        pass

    with pytest.raises(ValueError, match=r'method "my_method" is already registered by .*_Elsewhere'):
        tfkd.register("method", "my_method")(Other())


class LSTMStudentTest(TestCase):
    def test_lstm_student_round_trips_and_decodes(self):
        import tensorflow as tf

        from tfkd.data import SpecialIds
        from tfkd.decoding import beam_search, greedy_search
        from tfkd.models import LSTMSeq2Seq

        keras.utils.set_random_seed(3)
        model = LSTMSeq2Seq(30, 20, encoder_layers=1, decoder_layers=1, hidden_dim=8, embedding_dim=6, dropout=0.0)
        inputs = {"source_ids": np.array([[3, 4, 5, 0], [6, 7, 0, 0]]), "decoder_ids": np.array([[2, 7, 0], [2, 8, 9]])}
        self.assertEqual(tuple(model(inputs).shape), (2, 3, 20))
        revived = self.run_serialization_test(model)
        revived(inputs)
        revived.set_weights(model.get_weights())
        self.assertAllClose(model(inputs), revived(inputs), atol=1e-5)
        special = SpecialIds(pad=0, bos=2, eos=3, unk=1)
        source = tf.constant(inputs["source_ids"])
        greedy, _ = greedy_search(model, source, special, 5)
        np.testing.assert_array_equal(greedy.numpy(), reference_greedy(model, source, special, 5))
        beam, scores = beam_search(model, source, special, 5, beam_size=3)
        self.assertEqual(tuple(beam.shape), (2, 5))
        self.assertTrue(np.isfinite(scores.numpy()).all())
