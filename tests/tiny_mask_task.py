"""A tiny teacher, student and trainers for the mask-task tests (and the mirrored-step script)."""

import keras
import keras_hub
import numpy as np

from tfkd import registry
from tfkd.data import make_tokenizer
from tfkd.models import TransformerSeq2Seq

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TEACHER_VOCAB = SPECIALS + [f"w{i}" for i in range(25)]
# the student's source vocabulary: the specials and every other teacher word (a pruned one)
SOURCE_VOCAB = SPECIALS + [f"w{i}" for i in range(0, 25, 2)]
TARGET_VOCAB = 20


def tokenizers():
    return make_tokenizer(SOURCE_VOCAB), make_tokenizer(TEACHER_VOCAB)


def teacher_masked_lm(seed=3):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(TEACHER_VOCAB),
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=32,
    )
    return keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)


def student(seed=5):
    """Built here, so its weights depend on the seed only."""
    keras.utils.set_random_seed(seed)
    model = TransformerSeq2Seq(
        len(SOURCE_VOCAB),
        TARGET_VOCAB,
        encoder_layers=2,
        decoder_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        num_heads=2,
        dropout=0.0,
    )
    model({"source_ids": np.ones((1, 2), "int32"), "decoder_ids": np.ones((1, 2), "int32")})
    return model


def batch(rows=6, seed=0):
    """A padded batch with a masked copy of the source (uneven lengths)."""
    rng = np.random.default_rng(seed)
    lengths = [7, 3, 5, 2, 6, 4][:rows]
    source = np.zeros((rows, 7), "int32")
    masked = np.zeros((rows, 7), "int32")
    positions = np.zeros((rows, 2), "int32")
    weights = np.zeros((rows, 2), "float32")
    for r, n in enumerate(lengths):
        source[r, :n] = rng.integers(5, len(SOURCE_VOCAB), size=n)
        masked[r] = source[r]
        chosen = np.sort(rng.choice(n, size=min(2, n - 1), replace=False))
        positions[r, : len(chosen)] = chosen
        weights[r, : len(chosen)] = 1.0
        masked[r, chosen] = 4  # [MASK]
    mask_ids = np.take_along_axis(source, positions, axis=1)
    target = rng.integers(4, TARGET_VOCAB, size=(rows, 6)).astype("int32")
    for r, n in enumerate([6, 2, 4, 1, 5, 3][:rows]):
        target[r, n:] = 0
    decoder = np.concatenate([np.full((rows, 1), 2, "int32"), target[:, :-1]], 1)
    inputs = {
        "source_ids": source,
        "decoder_ids": decoder,
        "masked_source_ids": masked,
        "mask_positions": positions,
        "mask_ids": mask_ids,
        "mask_weights": weights,
    }
    return inputs, target


ONLINE = object()


def mask_task_trainer(model, alpha=0.5, gate="none", teacher=ONLINE, divergence=None, temperature=None):
    """A MaskTaskDistiller; the tiny teacher runs online unless ``teacher`` is given (``None``:
    the batches carry cached top-K); ``temperature``: a temperature schedule."""
    from tfkd.methods.mask_task.distiller import MaskTaskDistiller

    source, teacher_tok = tokenizers()
    teacher = teacher_masked_lm() if teacher is ONLINE else teacher
    trainer = MaskTaskDistiller(
        model,
        registry.lookup("task", "translation"),
        teacher,
        source,
        teacher_tok,
        loss_weights={"xe": 1.0, "kd": alpha},
        label_smoothing=0.1,
        gate=gate,
        divergence=divergence,
        temperature=temperature,
    )
    return trainer
