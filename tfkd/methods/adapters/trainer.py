"""The adapter-only conditional-MLM ``train_step`` of AB-Net (abnet.txt eq. 3 and 3.3).

What trains is ``trainer.trainable_variables``: the student's adapters, ``[LENGTH]`` predictor
and untied head parts; the student's BERTs are frozen (``trainable = False``) unless its
``adapters.train`` is ``all``, so the base :class:`~tfkd.training.Trainer` step never touches
them (and no optimizer slot is made for them).
"""

from tfkd.training.cmlm import CMLMTrainer


class AdapterCMLMTrainer(CMLMTrainer):
    """:class:`~tfkd.training.cmlm.CMLMTrainer` on a student built with adapters, named for
    what it trains in the run's log."""
