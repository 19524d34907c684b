"""What a student can do beyond ``call``, declared by inheriting these mix-ins (a user's student
too), so methods, decoders and exporters ask ``isinstance`` instead of probing attributes.
Importing this does not import TensorFlow."""


class AdapterStudent:
    """Pretrained weights joined by adapters (AB-Net): :meth:`adapter_layers` are what trains
    with ``distill.method: adapters``, and :meth:`save_adapters` writes what trained alone
    (``export.format: adapters``)."""

    def adapter_layers(self):
        """The adapter layers, in the order they run."""
        raise NotImplementedError

    def save_adapters(self, path):
        """Write the trained weights and the config to one file at ``path``."""
        raise NotImplementedError


class ParallelDecoding:
    """Predicts every target token at once and is decoded by Mask-Predict; other seq2seq
    students decode autoregressively (greedy or beam search)."""

    decoding = "parallel"


class SourceEmbedding:
    """Has ``source_embedding``, the encoder's token embedding layer (a ``ReversibleEmbedding``
    the mask-task method's MLM head ties its output projection to)."""

    source_embedding = None


__all__ = ["AdapterStudent", "ParallelDecoding", "SourceEmbedding"]
