"""The registry: user layers named in a spec are built and serialise like built-in ones."""

import keras
import numpy as np
import pytest

import tfkd
from tfkd import registry
from tfkd.models import TransformerSeq2Seq
from tfkd.testing import TestCase

import user_layers  # noqa: F401  (registers gated_residual_encoder)


class UserLayerTest(TestCase):
    def test_user_layer_passes_the_layer_test(self):
        self.run_layer_test(
            user_layers.GatedResidualEncoder, {"intermediate_dim": 8},
            np.random.rand(2, 5, 6).astype("float32"), expected_output_shape=(2, 5, 6),
        )

    def test_student_with_user_layer_round_trips(self):
        model = TransformerSeq2Seq(
            30, 20, encoder_layers=2, decoder_layers=1, hidden_dim=8, intermediate_dim=16, num_heads=2,
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
        model = TransformerSeq2Seq(30, 20, encoder_layers=1, decoder_layers=1, hidden_dim=8,
                                   intermediate_dim=16, num_heads=2, tie_embeddings=False)
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
    with pytest.raises(ValueError, match='unknown kind "encoder"; did you mean "encoder_layer"'):
        tfkd.register("encoder", "x")


def test_lookup_lists_choices():
    with pytest.raises(ValueError, match='unknown student "transfromer"; did you mean "transformer"'):
        registry.lookup("student", "transfromer")


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
