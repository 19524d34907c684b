"""Kill anywhere (``tests/kill_anywhere.py``) on the two stage method's small run in bfloat16:
SIGKILLed in its teacher's fine-tuning, its distilled pre-training and its fine-tuning, resumed
each time, it must finish equal to an uninterrupted run of the same spec; and every stage of
that run trained in ``mixed_bfloat16`` with finite numbers."""

import pytest
from helpers import check_bfloat16_run
from kill_anywhere import check_killed_anywhere


@pytest.mark.slow
def test_a_two_stage_run_killed_anywhere_finishes_as_an_uninterrupted_one(tmp_path, data_dir):
    straight = check_killed_anywhere("two_stage", tmp_path, data_dir)
    stages = ["vocab", "teacher_finetune", "teacher_predictions", "teacher_mlm", "pretrain_kd", "train"]
    check_bfloat16_run(straight, stages, students=["train"])
