"""Kill anywhere (``tests/kill_anywhere.py``) in bfloat16: the soft-target run with
``train.precision: mixed_bfloat16`` (every stage, the teacher's included), killed and resumed
again and again, must finish bit for bit as the uninterrupted bfloat16 run."""

import pytest
from kill_anywhere import check_killed_anywhere


@pytest.mark.slow
def test_a_bfloat16_run_killed_anywhere_finishes_as_an_uninterrupted_one(tmp_path, data_dir):
    check_killed_anywhere("soft_target_bfloat16", tmp_path, data_dir)
