"""Kill anywhere (``tests/kill_anywhere.py``) on the mask task method's small run: SIGKILLed,
SIGTERMed and SIGINTed in every kind of stage it has, resumed each time, it must finish equal to
an uninterrupted run of the same spec."""

import pytest
from kill_anywhere import check_killed_anywhere


@pytest.mark.slow
def test_a_mask_task_run_killed_anywhere_finishes_as_an_uninterrupted_one(tmp_path, data_dir):
    check_killed_anywhere("mask_task", tmp_path, data_dir)
