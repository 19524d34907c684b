"""Trainers of the mask-task and hidden-state methods, and the gradient gate (GOM).

``L = xe * L_nmt + kd * L_kd`` (eq. 4; ``xe = 1``, ``kd = alpha`` by default). ``L_kd`` reaches
only the student encoder, its source embedding and the trainer's own KD head (no second
backward pass through the decoder).

With ``gate`` set, the trainer takes the NMT and the KD gradient separately and combines them
per encoder module (:func:`gated_sum`, eqs. 5-6): where ``<g_nmt, g_kd> > 0`` the module gets
``g_nmt + g_kd``, else ``g_nmt`` alone. A module is one of the student's direct sublayers (the
source embedding, each encoder block, the encoder's final norm; ``gate: layer``) or each
variable by itself (``gate: variable``). Variables only one loss reaches get that loss's
gradient (the decoder ``g_nmt``, the KD head ``g_kd``).

Under a tf.distribute strategy the sign is decided on the all-reduced gradients (the trainer
sums each term's gradient over the replicas before :meth:`combine_gradients`), so the update
equals one device's on the same global batch.
"""

import keras
import tensorflow as tf
from keras import ops

from tfkd import data as data_lib
from tfkd.distillation.divergences import Divergence
from tfkd.distillation.temperature import ScheduledTemperature
from tfkd.errors import StageError
from tfkd.layers.precision import masked_lm_head_in_float32
from tfkd.teachers.checkpoints import bert_layer_outputs, vocabulary_maps
from tfkd.training.trainer import LossTerm, SupervisedTrainer


def dense(gradient):
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


def gated_sum(nmt, kd, groups):
    """Eq. 6 per group of variables.

    Args:
        nmt, kd: gradient lists (``None`` where a loss does not reach a variable).
        groups: lists of variable indices, the modules whose sign is decided together.

    Returns:
        ``(gradients, kept)``: the combined gradient list, and a float ``[len(groups)]`` tensor,
        1 where the module kept its KD gradient. Groups none of whose variables get both
        gradients are not gated (and count as neither kept nor dropped: they are left out of
        ``kept``).
    """
    combined = [n if k is None else (k if n is None else None) for n, k in zip(nmt, kd)]
    kept = []
    for group in groups:
        both = [i for i in group if nmt[i] is not None and kd[i] is not None]
        if not both:
            continue
        inner = tf.add_n(
            [tf.reduce_sum(tf.cast(dense(nmt[i]), tf.float32) * tf.cast(dense(kd[i]), tf.float32)) for i in both]
        )
        keep = inner > 0
        for i in both:
            if isinstance(nmt[i], tf.IndexedSlices):
                # an embedding's NMT gradient stays the rows it touched (the optimizer applies
                # it exactly as without the gate); the KD gradient joins as rows times 0 or 1
                rows = (
                    tf.shape(kd[i], out_type=nmt[i].indices.dtype)[0]
                    if not isinstance(kd[i], tf.IndexedSlices)
                    else nmt[i].dense_shape[0]
                )
                extra = dense(kd[i]) * tf.cast(keep, kd[i].dtype)
                combined[i] = tf.IndexedSlices(
                    tf.concat([nmt[i].values, extra], 0),
                    tf.concat([nmt[i].indices, tf.range(rows)], 0),
                    nmt[i].dense_shape,
                )
            else:
                combined[i] = tf.where(keep, nmt[i] + dense(kd[i]), nmt[i])
        kept.append(tf.cast(keep, tf.float32))
    return combined, tf.stack(kept) if kept else tf.zeros([0])


def module_groups(student, variables, granularity):
    """``[(module name, [variable indices])]``: the student's direct sublayers (``layer``) or
    its single variables (``variable``); ``variables`` is the list gradients are taken for
    (variables outside the student, such as the trainer's KD head, are left out)."""
    index = {id(v): i for i, v in enumerate(variables)}
    if granularity == "variable":
        return [(v.path, [index[id(v)]]) for v in student.trainable_variables if id(v) in index]
    groups, seen = [], set()
    for layer in student._flatten_layers(include_self=False, recursive=False):
        group = [index[id(v)] for v in layer.trainable_variables if id(v) in index and id(v) not in seen]
        seen.update(id(variables[i]) for i in group)
        if group:
            groups.append((layer.name, group))
    return groups


def teacher_view(source_ids, to_teacher, teacher_special, source_pad):
    """``[CLS] x [SEP]`` in teacher ids for a padded batch of student source ids (position
    ``i`` of the source is position ``i + 1`` here): the teacher's inputs, segment 0."""
    source_ids = ops.convert_to_tensor(source_ids)
    lengths = ops.sum(ops.cast(ops.not_equal(source_ids, source_pad), "int32"), axis=1)
    ids = ops.take(to_teacher, source_ids)
    batch = ops.shape(source_ids)[0]
    cls = ops.full((batch, 1), teacher_special.bos, "int32")
    pad = ops.full((batch, 1), teacher_special.pad, "int32")
    ids = ops.concatenate([cls, ops.cast(ids, "int32"), pad], axis=1)
    position = ops.arange(ops.shape(ids)[1])[None, :]
    ids = ops.where(ops.equal(position, lengths[:, None] + 1), teacher_special.eos, ids)
    padding = position <= lengths[:, None] + 1
    return {"token_ids": ids, "segment_ids": ops.zeros_like(ids), "padding_mask": padding}


def mlm_distillation_loss(teacher_logits, student_logits, to_teacher):
    """Eq. 3 per masked position: ``-sum_v q(v) log p(v)`` over the student's vocabulary,
    ``q`` the teacher's softmax restricted to the teacher ids ``to_teacher`` (student id ->
    teacher id) and renormalised there, ``p`` the student's softmax.

    Args:
        teacher_logits: ``[..., teacher vocabulary]``; student_logits: ``[..., student vocabulary]``.
    """
    q = restricted_teacher_probs(teacher_logits, to_teacher)
    return -ops.sum(q * ops.log_softmax(ops.cast(student_logits, "float32"), axis=-1), axis=-1)


def restricted_teacher_probs(teacher_logits, to_teacher):
    """The teacher's softmax over the student's vocabulary (teacher ids ``to_teacher``),
    renormalised there; no gradient."""
    teacher_logits = ops.take(ops.cast(teacher_logits, "float32"), to_teacher, axis=-1)
    return ops.stop_gradient(ops.softmax(teacher_logits, axis=-1))


def hidden_state_loss(student_projected, teacher_hidden):
    """Per token: the mean over the hidden dimension of the squared difference (the teacher's
    side takes no gradient)."""
    teacher_hidden = ops.stop_gradient(ops.cast(teacher_hidden, "float32"))
    return ops.mean(ops.square(ops.cast(student_projected, "float32") - teacher_hidden), axis=-1)


class EncoderDistiller(SupervisedTrainer):
    """The shared part: a frozen teacher, the student-to-teacher token map, the gate.

    Args:
        student: the seq2seq student (``encode(source_ids) -> (hidden, padding_mask)``, and
            ``hidden_dim``, the encoder output's width); its source vocabulary is made of the
            teacher's tokens.
        task: the run's task.
        teacher: the frozen teacher model (``None`` with ``distill.teacher: cache``).
        source_tokenizer: the student's source tokenizer; teacher_tokenizer: the teacher's.
        loss_weights: ``{"xe": ..., "kd": ...}``.
        label_smoothing: epsilon of ``L_nmt``.
        gate: ``"none"``, ``"layer"`` or ``"variable"`` (GOM granularity).
    """

    def __init__(
        self,
        student,
        task,
        teacher,
        source_tokenizer,
        teacher_tokenizer,
        loss_weights,
        label_smoothing=0.1,
        gate="none",
        **kwargs,
    ):
        super().__init__(student, task, label_smoothing=label_smoothing, loss_weights=loss_weights, **kwargs)
        self.teacher = teacher  # None when its outputs come from a cache
        if teacher is not None:
            teacher.trainable = False
        self.gate = gate
        self.needs_term_gradients = gate != "none"
        to_teacher, _ = vocabulary_maps(source_tokenizer, teacher_tokenizer, "train", "data.source_tokenizer.kind")
        self.to_teacher = to_teacher
        self.teacher_special = data_lib.SpecialIds.of(teacher_tokenizer)
        self.source_pad = source_tokenizer.token_to_id(data_lib.PAD)
        if self.needs_term_gradients:
            self.kd_kept_tracker = keras.metrics.Mean(name="kd_kept")

    @property
    def metrics(self):
        extra = [self.kd_kept_tracker] if self.needs_term_gradients else []
        return [*super().metrics, *extra]

    def teacher_inputs(self, source_ids):
        """The teacher's view of a batch of student source ids (:func:`teacher_view`)."""
        return teacher_view(source_ids, self.to_teacher, self.teacher_special, self.source_pad)

    def combine_gradients(self, term_gradients, variables):
        nmt, kd = term_gradients.get("xe"), term_gradients.get("kd")
        if kd is None or nmt is None:
            return super().combine_gradients(term_gradients, variables)
        groups = [group for _, group in module_groups(self.student, variables, self.gate)]
        combined, kept = gated_sum(nmt, kd, groups)
        if ops.shape(kept)[0]:
            self.kd_kept_tracker.update_state(ops.mean(kept))
        return combined


class MaskTaskDistiller(ScheduledTemperature, EncoderDistiller):
    """``L_kd = -sum_v q(v | X') log p(v | X')`` over the masked positions of X' (eq. 3).

    The student's MLM head is keras-hub's ``MaskedLMHead`` on the encoder output, tied to the
    source embedding (its intermediate dense layer projects when the encoder's width differs
    from the embedding's); a student without a ``ReversibleEmbedding`` source embedding gets an
    untied output layer. ``q`` is the teacher's MLM softmax restricted to the student's source
    vocabulary (the teacher's tokens the training sources use) and renormalised there. The
    batch carries ``masked_source_ids``, ``mask_positions``, ``mask_ids`` and ``mask_weights``
    (:mod:`.batches`); ``L_kd`` is normalised by masked positions.

    ``kd_input="clean"`` (Table 2's "KD on Mask Task, orign" row): both models read the
    original source X instead of X' for ``L_kd``, at the same chosen positions. ``divergence``
    (a :class:`tfkd.distillation.divergences.Divergence`) puts another divergence of ``q`` and
    the student's distribution in place of eq. 3's cross-entropy (over the cached top K,
    renormalised, with a cache; over the K and their tail, the batch's ``teacher_tail``, with its
    ``tail``). ``temperature`` (a :class:`tfkd.distillation.temperature.TemperatureSchedule`)
    puts ``q`` at the optimizer step's temperature: the online teacher's logits divided by it,
    the cached top K re-tempered.
    """

    def __init__(
        self,
        student,
        task,
        teacher,
        source_tokenizer,
        *args,
        kd_input="masked",
        divergence=None,
        temperature=None,
        **kwargs,
    ):
        # args: teacher_tokenizer and loss_weights, then EncoderDistiller's options
        super().__init__(student, task, teacher, source_tokenizer, *args, **kwargs)
        self.init_temperature(temperature)
        if kd_input not in ("masked", "clean"):
            raise ValueError(f'kd_input must be "masked" or "clean". Received: {kd_input!r}')
        self.kd_input = kd_input
        # None or forward KL: eq. 3's soft cross-entropy, as the method always computed it
        self.divergence = None if divergence is None or divergence == Divergence() else divergence
        import keras_hub

        from tfkd.models.abilities import SourceEmbedding

        embedding = student.source_embedding if isinstance(student, SourceEmbedding) else None
        tied = isinstance(embedding, keras_hub.layers.ReversibleEmbedding)
        self.mlm_head = keras_hub.layers.MaskedLMHead(
            vocabulary_size=source_tokenizer.vocabulary_size(),
            token_embedding=embedding if tied else None,
            intermediate_activation="gelu",
            name="student_mlm_head",
        )
        masked_lm_head_in_float32(self.mlm_head)
        # built now, so the optimizer is built with its variables
        self.mlm_head.build((None, None, student.hidden_dim), (None, None))

    @property
    def metrics(self):
        return [*super().metrics, *self.temperature_metrics()]

    def compute_terms(self, data, training):
        _, terms, tokens = self.task.supervised_terms(self.student, data, training, self.label_smoothing)
        inputs = keras.utils.unpack_x_y_sample_weight(data)[0]
        if "teacher_probs" in inputs:  # distill.teacher: cache
            terms["kd"] = self.cached_kd_term(inputs, training)
        elif "masked_source_ids" in inputs:  # validation batches carry no masked copy
            source = inputs["masked_source_ids" if self.kd_input == "masked" else "source_ids"]
            hidden, _ = self.student.encode(source, training=training)
            student_logits = self.mlm_head(hidden, mask_positions=inputs["mask_positions"])
            teacher_inputs = self.teacher_inputs(source)
            teacher_inputs["mask_positions"] = ops.convert_to_tensor(inputs["mask_positions"]) + 1
            teacher_logits = self.teacher(teacher_inputs, training=False)
            if self.temperature is not None:
                teacher_logits = self.temperature.scale(teacher_logits, self.step_temperature())
            if self.divergence is None:
                kd = mlm_distillation_loss(teacher_logits, student_logits, self.to_teacher)
            else:
                kd = self.divergence.dense(restricted_teacher_probs(teacher_logits, self.to_teacher), student_logits)
            weights = ops.cast(inputs["mask_weights"], "float32")
            terms["kd"] = LossTerm(ops.sum(kd * weights), ops.sum(weights))
        return terms, tokens

    def cached_kd_term(self, inputs, training):
        """``L_kd`` against the cached top-K of ``q(.|X')`` (renormalised over K): the batch's
        ``teacher_ids``/``teacher_probs`` are ``[B, L, K]`` over source positions, non-zero at
        the masked ones, and ``masked_source_ids`` is the X' they were computed on."""
        from tfkd.masking import chosen_predictions
        from tfkd.training.losses import top_k_soft_cross_entropy

        masked = inputs["masked_source_ids"]
        chosen = ops.sum(ops.cast(inputs["teacher_probs"], "float32"), axis=-1) > 0
        positions, _, weights = chosen_predictions(masked, chosen)
        hidden, _ = self.student.encode(masked, training=training)
        student_logits = self.mlm_head(hidden, mask_positions=positions)
        teacher_ids = ops.take_along_axis(inputs["teacher_ids"], positions[:, :, None], axis=1)
        teacher_probs = ops.take_along_axis(inputs["teacher_probs"], positions[:, :, None], axis=1)
        if self.temperature is not None:
            teacher_probs = self.temperature.apply(teacher_probs, self.step_temperature())
        if self.divergence is None:
            kd = top_k_soft_cross_entropy(teacher_ids, teacher_probs, student_logits)
        else:
            tail = inputs.get("teacher_tail")
            tail = None if tail is None else ops.take_along_axis(tail, positions, axis=1)
            kd = self.divergence.top_k(teacher_ids, teacher_probs, student_logits, tail)
        return LossTerm(ops.sum(kd * weights), ops.sum(weights))


class HiddenStateDistiller(EncoderDistiller):
    """``L_kd`` = MSE between the teacher's ``teacher_layer`` hidden states and the student
    encoder's output through a learned projection (a Dense layer to the teacher's width), per
    source token (mean over the hidden dimension, normalised by source tokens), on X
    (``hidden_input: clean``) or X' (``masked``).

    Args:
        teacher: a keras-hub ``BertBackbone``.
        teacher_layer: 0-based index into its transformer layers (negative: from the top).
    """

    def __init__(
        self,
        student,
        task,
        teacher,
        source_tokenizer,
        teacher_tokenizer,
        loss_weights,
        teacher_layer=-1,
        hidden_input="clean",
        **kwargs,
    ):
        super().__init__(student, task, teacher, source_tokenizer, teacher_tokenizer, loss_weights, **kwargs)
        layers = len(teacher.transformer_layers)
        if not -layers <= teacher_layer < layers:
            raise StageError(f"distill.teacher_layer: {teacher_layer} is not a layer of the teacher's {layers}")
        self.num_teacher_layers = teacher_layer % layers + 1
        self.hidden_input = hidden_input
        self.projection = keras.layers.Dense(teacher.hidden_dim, name="hidden_projection")
        self.projection.build((None, None, student.hidden_dim))

    def compute_terms(self, data, training):
        _, terms, tokens = self.task.supervised_terms(self.student, data, training, self.label_smoothing)
        inputs = keras.utils.unpack_x_y_sample_weight(data)[0]
        source = inputs["masked_source_ids"] if self.hidden_input == "masked" else inputs["source_ids"]
        if self.hidden_input == "masked" and "masked_source_ids" not in inputs:
            return terms, tokens  # validation batches carry no masked copy
        hidden, padding = self.student.encode(source, training=training)
        teacher_hidden = bert_layer_outputs(
            self.teacher, self.teacher_inputs(source), num_layers=self.num_teacher_layers
        )[-1]
        # the teacher's position i + 1 is the student's i ([CLS] first)
        error = hidden_state_loss(self.projection(hidden), teacher_hidden[:, 1 : ops.shape(source)[1] + 1])
        mask = ops.cast(padding, "float32")
        terms["kd"] = LossTerm(ops.sum(error * mask), ops.sum(mask))
        return terms, tokens
