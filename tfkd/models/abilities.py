"""What a student can do beyond ``call``, declared by inheriting these mix-ins (a user's student
too), so methods, decoders and exporters ask ``isinstance`` instead of probing attributes.
Importing this does not import TensorFlow."""


class AdapterStudent:
    """Pretrained weights joined by adapters (AB-Net): :meth:`adapter_layers` are what trains
    with ``distill.method: adapters``, and :meth:`save_adapters` writes what trained alone
    (``export.format: adapters``). ``adapter_settings`` is the student's
    :class:`~tfkd.models.configs.AdapterSettings` (``None`` when it keeps none)."""

    adapter_settings = None

    def adapter_layers(self):
        """The adapter layers, in the order they run."""
        raise NotImplementedError

    def save_adapters(self, path):
        """Write the trained weights and the config to one file at ``path``."""
        raise NotImplementedError


class BackboneStudent:
    """Wraps a keras-hub backbone, ``backbone``: the part MLM/CLM pre-training trains and
    hands on to fine-tuning (``distill.method: two_stage``). A student without this ability
    is pre-trained whole (a MASS seq2seq model)."""

    backbone = None


class IncrementalDecoding:
    """Decodes one target token at a time from key/value caches: ``decode_first(bos, hidden,
    padding_mask, max_length, grow=True)`` and ``decode_next(token_ids, index, hidden,
    padding_mask, state, grow=True)`` return ``(logits, state)``. With ``grow`` the state's
    tensors may change shape from step to step (a cache that grows by a position); without it
    (an XLA-compiled decoder, whose loop keeps its shapes) they keep the shapes
    ``decode_first`` gave them. What the state keeps under ``"shared"`` (rows per hypothesis,
    the same for every hypothesis of a sentence) and ``"fixed"`` (no rows) the model never
    changes; the decoders take rows out of everything but ``"fixed"`` as sentences are done.
    :meth:`supports_incremental_decoding` says whether this instance can (its decoder blocks
    may be a user's, without caches); greedy and beam search recompute the prefix at every
    step otherwise."""

    def supports_incremental_decoding(self):
        return True


class ParallelDecoding:
    """Predicts every target token at once and is decoded by Mask-Predict; other seq2seq
    students decode autoregressively (greedy or beam search)."""

    decoding = "parallel"


class TargetMaskToken:
    """Reads target tokens with ``[MASK]`` at some positions and takes that token's id in the
    run's target vocabulary as ``mask_id`` when the task builds it (a CMLM Transformer; an
    AB-Net reads its own BERT's)."""

    mask_id = None


class PositionalRange:
    """Its position encoding covers ``max_length`` positions: ``decode.long_inputs: whole``
    reads sources (and writes targets) up to that many tokens instead of ``data.max_tokens``."""

    max_length = None


class SourceEmbedding:
    """Has ``source_embedding``, the encoder's token embedding layer (a ``ReversibleEmbedding``
    the mask-task method's MLM head ties its output projection to)."""

    source_embedding = None


__all__ = [
    "AdapterStudent",
    "BackboneStudent",
    "IncrementalDecoding",
    "ParallelDecoding",
    "PositionalRange",
    "SourceEmbedding",
    "TargetMaskToken",
]
