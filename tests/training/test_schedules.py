"""Learning-rate schedules against the papers' formulas."""

import numpy as np
import pytest

from tfkd.training.schedules import InverseSqrtSchedule, TriangularSchedule


def test_inverse_sqrt_schedule_matches_paper_formula():
    schedule = InverseSqrtSchedule(scale=2.0, hidden_dim=512, warmup_steps=4000)
    for step in [0, 1, 100, 3999, 4000, 10000, 100000]:
        paper_step = step + 1  # the optimizer's iteration counter starts at 0
        expected = 2.0 * 512**-0.5 * min(paper_step**-0.5, paper_step * 4000**-1.5)
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6)
    peak = [float(schedule(s)) for s in (3998, 3999, 4000)]
    assert peak[1] == pytest.approx(max(peak), rel=1e-6)
    assert InverseSqrtSchedule.from_config(schedule.get_config()).get_config() == schedule.get_config()


def test_triangular_schedule_matches_numpy():
    schedule = TriangularSchedule(5e-5, 100, 1000)
    for step in [0, 49, 99, 100, 500, 998, 999, 1500]:
        s = step + 1
        expected = 5e-5 * max(min(s / 100, (1000 - s) / 900), 0.0)
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-5, atol=1e-12)


def test_a_section_s_adam_follows_its_triangular_schedule_and_clips_when_told():
    import types

    from tfkd.training.schedules import section_adam

    settings = types.SimpleNamespace(learning_rate=1e-3, warmup_steps=4, steps=20)
    optimizer = section_adam(settings)
    schedule = optimizer._learning_rate  # (learning_rate is the current value)
    assert isinstance(schedule, TriangularSchedule)
    rates = [float(schedule(step)) for step in (0, 3, 11, 19)]
    # warm-up to the peak at step 4 (counted from 1), then down to 0 at step 20
    np.testing.assert_allclose(rates, [2.5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)
    assert optimizer.global_clipnorm is None
    assert section_adam(settings, clipnorm=1.0).global_clipnorm == 1.0
