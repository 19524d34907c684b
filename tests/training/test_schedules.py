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
