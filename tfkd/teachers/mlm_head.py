"""The ``teacher_mlm`` stage: a tied MLM head for a teacher checkpoint that has none.

The offline MiniLM is a sentence-embedding BERT without its MLM head, yet the methods that
distil its masked-LM distributions need one. The stage trains keras-hub's tied
``MaskedLMHead`` (and the top ``train_layers`` transformer layers, ``distill.teacher_mlm``)
with plain MLM on the method's text (:meth:`TeacherMLMStage.sentences`: the mask-task
method's training sources, LightPAFF's pre-training corpus), masked as the method masks
(:meth:`TeacherMLMStage.masking`), and reports MLM accuracy on the validation text under a
fixed masking. A checkpoint that brings a head (a keras-hub ``BertMaskedLM`` preset) skips
the training.
"""

import logging
import os

import keras
import keras_hub
import tensorflow as tf

from tfkd import data as data_lib
from tfkd.errors import StageError
from tfkd.masking import MASKERS, special_free
from tfkd.runner import Stage
from tfkd.teachers.checkpoints import has_masked_lm_head, load_masked_lm_teacher, teacher_tokenizer
from tfkd.training.masked_lm import TEACHER_WEIGHTS, VALIDATION_MASKING_STREAM, fit_masked_lm

log = logging.getLogger("tfkd")


def mlm_batches(sentences_ids, tokenizer, settings, masking, mask_rate, seed, training):
    """``(inputs, labels, weights)`` MLM batches of ``[CLS] x [SEP]`` (padded to the batch's
    longest). Training batches are shuffled, repeated and masked with a new seed per batch;
    validation is one pass masked from ``seed`` (a fixed ``[2]`` pair)."""
    special = data_lib.SpecialIds.of(tokenizer)
    mask_id = tokenizer.token_to_id(data_lib.MASK)
    vocab_size = tokenizer.vocabulary_size()
    packer = keras_hub.layers.StartEndPacker(
        sequence_length=settings.max_length, start_value=special.bos, end_value=special.eos, pad_value=special.pad
    )
    ds = tf.data.Dataset.from_tensor_slices(sentences_ids)
    if training:
        ds = ds.shuffle(min(int(sentences_ids.nrows()), 100000), seed=seed).repeat()
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
    else:
        seeds = tf.data.Dataset.from_tensors(tf.constant([seed, VALIDATION_MASKING_STREAM], tf.int64)).repeat()
    ds = tf.data.Dataset.zip((ds.ragged_batch(settings.batch_size), seeds))

    def to_mlm_batch(ids, batch_seed):
        token_ids = packer(ids)
        longest = tf.cast(tf.reduce_max(ids.row_lengths()), tf.int32) + 2
        token_ids = token_ids[:, :longest]
        padding = tf.not_equal(token_ids, special.pad)
        candidates = special_free(token_ids, [special.pad, special.bos, special.eos])
        masked, positions, labels, weights = MASKERS[masking](
            token_ids, candidates, mask_rate, mask_id, vocab_size, seed=batch_seed
        )
        inputs = {
            "token_ids": masked,
            "segment_ids": tf.zeros_like(masked),
            "padding_mask": padding,
            "mask_positions": positions,
        }
        return inputs, labels, weights

    return ds.map(to_mlm_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def freeze_below(masked_lm, train_layers):
    """Train the MLM head and the top ``train_layers`` transformer layers (``"all"``: every
    layer and the embeddings); the rest, and the tied token embedding, stay frozen."""
    if train_layers == "all":
        return
    backbone = masked_lm.backbone
    layers = backbone.transformer_layers
    frozen = [
        backbone.token_embedding,
        backbone.position_embedding,
        backbone.segment_embedding,
        backbone.embeddings_layer_norm,
        *layers[: len(layers) - train_layers],
    ]
    if getattr(backbone, "pooled_dense", None) is not None:  # unused by masked LM
        frozen.append(backbone.pooled_dense)
    for layer in frozen:
        layer.trainable = False


class TeacherMLMStage(Stage):
    """Trains the teacher's MLM head on a method's text. A method subclasses it to say which
    text (:meth:`sentences`, keyed by :meth:`text_key` and :meth:`input_files`) and which
    masking (:meth:`masking`); the settings are ``distill.teacher_mlm``
    (:class:`tfkd.teachers.settings.TeacherMLMSpec`)."""

    name = "teacher_mlm"
    runs_in_train_precision = True
    text_description = "sentences"

    def masking(self, spec):
        """``(masking, mask_rate)``: a :data:`tfkd.masking.MASKERS` name and its rate."""
        return "token", 0.15

    def text_key(self, spec):
        """What determines the text (besides the content of :meth:`input_files`)."""
        raise NotImplementedError

    def input_files(self, spec):
        return []

    def sentences(self, context, split):
        """``(sentences, origin)`` of ``"train"`` or ``"valid"`` (no sentences: no validation)."""
        raise NotImplementedError

    def config(self, spec):
        masking, mask_rate = self.masking(spec)
        return {
            "checkpoint": spec.teacher.checkpoint,
            "teacher_mlm": spec.distill.teacher_mlm.model_dump(mode="json"),
            "masking": masking,
            "mask_rate": mask_rate,
            "data": self.text_key(spec),
        }

    def run(self, context, workdir):
        spec = context.spec
        settings = spec.distill.teacher_mlm
        if has_masked_lm_head(spec.teacher.checkpoint):
            log.info("%s: %s has an MLM head; nothing to train", self.name, spec.teacher.checkpoint)
            return {"head": "checkpoint"}
        masking, mask_rate = self.masking(spec)
        keras.utils.set_random_seed(settings.seed)
        tokenizer = teacher_tokenizer(spec.teacher.checkpoint)

        def sentences(split):
            text, origin = self.sentences(context, split)
            ids = data_lib.tokenize_to_ragged(tokenizer, text)
            ids = tf.ragged.boolean_mask(ids, ids.row_lengths() > 0)
            # a text longer than the model's input becomes several inputs
            return data_lib.chunk_rows(ids, settings.max_length - 2), origin

        train_ids, origin = sentences("train")
        if int(train_ids.nrows()) == 0:
            raise StageError(f"{self.name}: no {self.text_description} in {origin}")

        def make_train_ds():
            return mlm_batches(train_ids, tokenizer, settings, masking, mask_rate, settings.seed, training=True)

        train_ds = make_train_ds()
        valid_ids, _ = sentences("valid")
        valid_ds = (
            mlm_batches(valid_ids, tokenizer, settings, masking, mask_rate, settings.seed, training=False)
            if int(valid_ids.nrows())
            else None
        )
        teacher = load_masked_lm_teacher(spec.teacher.checkpoint)
        freeze_below(teacher, settings.train_layers)
        results = fit_masked_lm(
            teacher,
            train_ds,
            valid_ds,
            settings,
            workdir,
            self.name,
            f"MLM head on {int(train_ids.nrows()):,} {self.text_description} ({masking} "
            f"masking, {settings.train_layers} top layers trained), batches of "
            f"{settings.batch_size}",
            hint="Lower distill.teacher_mlm.learning_rate.",
            jit_compile=spec.train.jit_compile,
            remake_train_ds=make_train_ds,
        )
        return {"head": "trained", **results}


def load_trained_teacher(context):
    """The frozen masked-LM teacher: the checkpoint with the head the ``teacher_mlm`` stage
    trained (or its own head)."""
    spec = context.spec
    teacher = load_masked_lm_teacher(spec.teacher.checkpoint)
    weights = os.path.join(context.runner.stage_dir("teacher_mlm"), TEACHER_WEIGHTS)
    if os.path.exists(weights):
        teacher(
            {
                "token_ids": tf.ones([1, 3], tf.int32),
                "segment_ids": tf.zeros([1, 3], tf.int32),
                "padding_mask": tf.ones([1, 3], tf.bool),
                "mask_positions": tf.ones([1, 1], tf.int32),
            }
        )
        teacher.load_weights(weights)
    teacher.trainable = False
    return teacher
