"""How a student learns from a teacher's distributions, shared by every method that distils
them, so that no method imports another's package:

- :mod:`.divergences`: the divergence family (forward KL, reverse KL, generalized JSD, TVD,
  skew KL) over dense or top-K distributions with their tail mass.
- :mod:`.temperature`: temperature as a schedule over training steps.
- :mod:`.soft_target_distiller`: the soft-target ``train_step`` (soft + cross-entropy terms).
- :mod:`.settings`: their spec settings (pydantic only: specs validate without TensorFlow).

Teachers themselves (checkpoints, the C-MLM teacher, MLM heads, top-K caches) are in
:mod:`tfkd.teachers`. The top-K losses are in :mod:`tfkd.training.losses` with the other
token-level losses. Importing this package imports nothing; each module imports what it needs.
"""
