"""The GPT-2 student: config round trip, and cached greedy generation against a full forward
pass per token."""

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from tfkd.models.gpt2_lm import GPT2LM


def build(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    model = GPT2LM(
        vocabulary_size=50,
        num_layers=2,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        dropout=0.0,
        max_sequence_length=32,
        **kwargs,
    )
    model({"token_ids": tf.ones([1, 3], tf.int32), "padding_mask": tf.ones([1, 3], tf.bool)})
    return model


def test_config_round_trip_gives_the_same_model():
    model = build()
    clone = GPT2LM.from_config(model.get_config())
    ids = np.array([[5, 7, 9, 11]], np.int32)
    inputs = {"token_ids": ids, "padding_mask": np.ones_like(ids, bool)}
    clone(inputs)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(inputs), model(inputs), atol=1e-6)
    assert clone.hidden_dim == 16 and clone.num_layers == 2 and clone.vocabulary_size == 50
    # around an existing backbone (a teacher): the config carries the backbone
    wrapped = GPT2LM(backbone=model.backbone)
    assert "backbone" in wrapped.get_config() and GPT2LM.from_config(wrapped.get_config()).num_layers == 2


def test_cached_greedy_generation_equals_a_full_forward_pass_per_token():
    model = build(seed=3)
    prompts = [[3, 4, 5], [6, 7]]
    width = 3 + 8
    token_ids = np.zeros([2, width], np.int32)
    mask = np.zeros([2, width], bool)
    for row, prompt in enumerate(prompts):
        token_ids[row, : len(prompt)] = prompt
        mask[row, : len(prompt)] = True
    out = model.generate_step(tf.constant(token_ids), tf.constant(mask), keras_hub.samplers.GreedySampler())
    for row, prompt in enumerate(prompts):
        ids = list(prompt)
        while len(ids) < width:
            logits = np.asarray(model({"token_ids": np.array([ids]), "padding_mask": np.ones([1, len(ids)], bool)}))
            ids.append(int(np.argmax(logits[0, -1])))
        assert out["token_ids"].numpy()[row].tolist() == ids
