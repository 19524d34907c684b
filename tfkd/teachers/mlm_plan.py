"""The names of a masked-LM teacher's stages (``mask_task`` and ``two_stage``), in one place;
importing this imports nothing. The C-MLM teacher's are in :mod:`.cmlm_plan`, a student
teacher's in :mod:`.student_plan`.

- ``teacher_mlm``: a checkpoint's tied MLM head trained on the method's text
  (:mod:`.mlm_head`);
- ``teacher_mlm_cache``: that teacher's top K at one fixed masking of every training example
  (``distill.teacher: cache``), in the top-K cache format (:mod:`.topk_cache`). Runs made
  before it had this name called it ``teacher_cache``, the C-MLM teacher's name; ``--stages
  teacher_cache`` in such a run is an unknown-stage error that names this one.
"""

MLM_STAGE = "teacher_mlm"
MLM_CACHE_STAGE = "teacher_mlm_cache"

__all__ = ["MLM_CACHE_STAGE", "MLM_STAGE"]
