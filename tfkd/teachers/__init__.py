"""Teachers: where a teacher comes from and what it gives a student, in one place that imports
no method and no task.

- :mod:`.checkpoints`: loading a teacher checkpoint (a keras-hub preset, a local Hugging Face
  folder, a folder inside an installed package), its tokenizer, its MLM head when it has one.
- :mod:`.cmlm`, :mod:`.cmlm_stages`, :mod:`.cmlm_plan`: the conditional-MLM teacher of
  ``soft_target`` and ``ensemble`` (cmlm_kd 3.2): its fine-tuning (``teacher_finetune``) and
  its top-K soft targets for every target position (``teacher_cache``).
- :mod:`.mlm_head`: the ``teacher_mlm`` stage that trains a checkpoint's tied MLM head (a
  checkpoint without one, such as the offline MiniLM) for ``mask_task`` and ``two_stage``.
- :mod:`.topk_cache`: the sharded top-K cache every caching teacher writes and students stream,
  keyed by example id, with the tail mass outside the top K.
- :mod:`.settings`: the spec sections of those stages (pydantic only: specs validate without
  TensorFlow).

What a student learns from a teacher's outputs (the divergences, the temperature schedule) is
in :mod:`tfkd.distillation`. Importing this package imports nothing; each module imports what
it needs.
"""
