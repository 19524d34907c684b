"""Knowledge-distillation machinery several methods share, so that no method imports another's
package:

- :mod:`.settings`: the spec sections of the shared stages (``TeacherMLMSpec``,
  ``TopKCacheSpec``); pydantic only, so specs validate without TensorFlow.
- :mod:`.topk_cache`: sharded top-K teacher caches keyed by example id (writing, checking,
  streaming).
- :mod:`.teacher_mlm`: the ``teacher_mlm`` stage that trains a teacher checkpoint's MLM head,
  its batches, and loading the trained teacher.

The top-K losses are in :mod:`tfkd.training.losses` with the other token-level losses.
Importing this package imports nothing; each module imports what it needs.
"""
