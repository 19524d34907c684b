"""Temperature schedules over a top-K teacher cache (``tfkd.distillation.temperature``) against
NumPy: re-tempering a cache written at T equals the teacher's top K at the new temperature, the
schedules' values, and the spec section's one-line refusals."""

import math
import os

import numpy as np
import pytest
from helpers import REPO

from tfkd.distillation.temperature import TemperatureSchedule, retemper


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    return np.exp(x) / np.exp(x).sum(-1, keepdims=True)


def cached_top_k(teacher_logits, temperature, k):
    """What a cache written at ``temperature`` holds: the top-K ids and their probabilities."""
    full = softmax(teacher_logits / temperature)
    ids = np.argsort(-full, axis=-1)[..., :k]
    return ids, np.take_along_axis(full, ids, -1)


@pytest.mark.parametrize("new_temperature", [0.5, 1.0, 2.0, 7.0])
def test_a_cache_re_tempered_is_the_teachers_top_k_at_the_new_temperature(new_temperature):
    rng = np.random.default_rng(3)
    teacher_logits = rng.normal(size=(3, 4, 50)) * 4
    ids, cached = cached_top_k(teacher_logits, 5.0, k=6)
    # at the new temperature the K most likely tokens are the same ones
    new_ids, _ = cached_top_k(teacher_logits, new_temperature, k=6)
    np.testing.assert_array_equal(np.sort(ids, -1), np.sort(new_ids, -1))
    expected = softmax(np.take_along_axis(teacher_logits, ids, -1) / new_temperature)
    np.testing.assert_allclose(np.asarray(retemper(cached, 5.0 / new_temperature)), expected, rtol=2e-5, atol=1e-7)


def test_padding_rows_stay_zero_and_a_large_power_does_not_underflow():
    probs = np.array([[0.6, 0.3, 0.1], [0.0, 0.0, 0.0], [1e-12, 2e-12, 0.0]], "float32")
    out = np.asarray(retemper(probs, 40.0))
    np.testing.assert_array_equal(out[1], 0.0)
    assert out[2, 2] == 0.0 and math.isclose(out[2].sum(), 1.0, rel_tol=1e-6)  # 2^40 : 1, not 0 / 0
    np.testing.assert_allclose(out[2, :2], softmax(40 * np.log([1e-12, 2e-12])), rtol=1e-3)  # float32 logs, times 40
    np.testing.assert_allclose(np.asarray(retemper(probs, 1.0))[0], probs[0], rtol=1e-6)


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine"])
def test_a_schedule_goes_from_start_to_end_over_the_steps_and_stays_there(kind):
    schedule = TemperatureSchedule(kind, 5.0, 5.0 if kind == "constant" else 1.0, 1000, 5.0)
    for step in (0, 1, 250, 500, 999, 1000, 1500):
        done = min(step / 1000, 1.0)
        expected = {
            "constant": 5.0,
            "linear": 5.0 - 4.0 * done,
            "cosine": 1.0 + 4.0 * 0.5 * (1 + math.cos(math.pi * done)),
        }[kind]
        assert math.isclose(float(schedule.temperature(step)), expected, rel_tol=1e-6), step


def spec_with(*flags):
    from tfkd.spec import load_spec

    return load_spec(os.path.join(REPO, "specs", "quickstart.yaml"), list(flags))


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["distill.temperature_schedule={kind: constant, start: 2, end: 1}"],
            "a constant schedule has a start and no end",
        ),
        (["distill.temperature_schedule={kind: cosine, start: 2}"], "a cosine schedule needs an end temperature"),
        (["distill.temperature_schedule={start: 0, end: 1}"], "distill.temperature_schedule.start"),
        (
            ["distill.temperature_schedule={start: 5, end: 1}", "distill.tail=true"],
            "give temperature_schedule or tail, not both",
        ),
    ],
)
def test_the_spec_refuses_a_schedule_it_cannot_apply_in_one_line(flags, message):
    from tfkd.errors import SpecError

    with pytest.raises(SpecError) as caught:
        spec_with(*flags)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_schedule_keys_the_students_training_and_no_schedule_keeps_the_key():
    from types import SimpleNamespace

    from tfkd import registry

    method = registry.lookup("method", "soft_target")

    def config(*flags):
        return method.train_config(SimpleNamespace(spec=spec_with(*flags)))

    plain = config()
    assert "divergence" not in plain and "temperature_schedule" not in spec_with().distill.model_dump()
    scheduled = config("distill.temperature_schedule={kind: linear, start: 5, end: 1}")
    assert scheduled["divergence"]["temperature_schedule"]["start"] == 5.0
    assert scheduled["divergence"]["temperature_schedule"]["end"] == 1.0
    assert config("distill.temperature_schedule={kind: cosine, start: 5, end: 1}") != scheduled
    assert config("distill.temperature_schedule={kind: linear, start: 4, end: 1}") != scheduled
