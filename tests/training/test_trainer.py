"""Tests of ``tfkd.training.trainer``: mixed-precision steps (loss scaling, clipping, loss
tracking against float32), the precision policy context, per-term gradients, and loss terms
with different normalisers.

Everything runs on a tiny Transformer (1+1 layers, width 32, vocabulary 50) or on Dense toys,
and is checked against NumPy or against an independent ``tf.GradientTape`` where possible.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tfkd import registry
from tfkd.models.transformer import TransformerSeq2Seq
from tfkd.stages import precision_policy
from tfkd.training.trainer import LossTerm, SupervisedTrainer, Trainer

VOCAB = 50
LENGTH = 12  # longest source; targets are BOS + reversed source + EOS
BATCH = 8
LOSS_SCALE = 2.0**15  # LossScaleOptimizer's initial (and, over these few steps, only) scale
LABEL_SMOOTHING = 0.1


@pytest.fixture(autouse=True)
def global_policy_stays_float32():
    """Every model below is built inside ``precision_policy``; none may leak its policy."""
    assert keras.mixed_precision.global_policy().name == "float32"
    yield
    assert keras.mixed_precision.global_policy().name == "float32"


# ----------------------------------------------------------------------------- helpers


def translation_task():
    return registry.lookup("task", "translation")


def reversal_corpus(n=32, seed=0):
    """Random source ids (3..VOCAB-1, lengths 6..12, padded with 0) to be reversed: learnable in
    a few dozen steps, so losses move. Returns ``(inputs, target_ids)``."""
    rng = np.random.default_rng(seed)
    source = np.zeros((n, LENGTH), "int32")
    target = np.zeros((n, LENGTH + 2), "int32")
    for i, length in enumerate(rng.integers(LENGTH // 2, LENGTH + 1, n)):
        tokens = rng.integers(3, VOCAB, length)
        source[i, :length] = tokens
        target[i, 0] = 1
        target[i, 1 : length + 1] = tokens[::-1]
        target[i, length + 1] = 2
    return {"source_ids": source, "decoder_ids": target[:, :-1]}, target[:, 1:]


def make_student():
    return TransformerSeq2Seq(
        VOCAB,
        VOCAB,
        encoder_layers=1,
        decoder_layers=1,
        hidden_dim=32,
        intermediate_dim=64,
        num_heads=2,
        dropout=0.0,
        pad_id=0,
    )


@pytest.fixture(scope="module")
def corpus():
    return reversal_corpus()


@pytest.fixture(scope="module")
def batch(corpus):
    inputs, target = corpus
    return {k: v[:BATCH] for k, v in inputs.items()}, target[:BATCH]


@pytest.fixture(scope="module")
def initial_weights(batch):
    """One seeded float32 initialisation, copied into every student below."""
    keras.utils.set_random_seed(1)
    student = make_student()
    student(batch[0])
    return student.get_weights()


def build_trainer(policy, weights, inputs, optimizer, trainer_cls=SupervisedTrainer):
    with precision_policy(policy):
        student = make_student()
        student(inputs)
        student.set_weights(weights)
        trainer = trainer_cls(student, translation_task(), label_smoothing=LABEL_SMOOTHING)
        trainer.compile(optimizer=optimizer)
        # as the train stage does; it also spares fit a second trace (variables created in the first)
        trainer.optimizer.build(trainer.trainable_variables)
    # the policy really applied: float32 variables, reduced-precision compute
    assert student.dtype_policy.name == policy
    assert all(v.dtype == "float32" for v in trainer.trainable_variables)
    return trainer


def flat(arrays):
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])


def one_step(trainer, batch):
    """One ``fit`` step (the real, traced path) on ``batch``: (flattened weight delta, logs)."""
    before = [v.numpy().copy() for v in trainer.trainable_variables]
    history = trainer.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False)
    delta = flat([v.numpy() for v in trainer.trainable_variables]) - flat(before)
    return delta, {name: values[-1] for name, values in history.history.items()}


def xe_loss(student, data, training=False):
    _, terms, _ = translation_task().supervised_terms(student, data, training, LABEL_SMOOTHING)
    return terms["xe"].total / terms["xe"].count


# ----------------------------------------------------------------------------- 1. loss scaling


class UnscaledLossTrainer(SupervisedTrainer):
    """The step before the fix: differentiates the unscaled loss, while the LossScaleOptimizer
    still divides the gradients by its scale (2^15)."""

    def train_step(self, data):
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            terms, tokens = self.compute_terms(data, training=True)
            values = self._values(terms)
            loss = tf.add_n([weight * values[name] for name, weight in self.loss_weights.items()])
        gradients = tape.gradient(loss, variables)
        self._track_grad_norm(gradients)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._track(terms, tokens)


CLIP = 0.1  # the batch's gradient norm is 1.53: the clip is active


def test_mixed_float16_step_scales_the_loss_so_clip_norm_clips(batch, initial_weights):
    inputs, _ = batch

    # NumPy reference of one SGD(lr=1, global_clipnorm=CLIP) step from the float32 gradient.
    # The clip's norm (like tf.linalg.global_norm) takes an IndexedSlices gradient (the source
    # embedding) by its slice values, repeated ids not summed, so the applied update's norm is
    # CLIP * dense_norm / clip_norm: 0.27% above CLIP on this batch.
    student = make_student()
    student(inputs)
    student.set_weights(initial_weights)
    with tf.GradientTape() as tape:
        loss = xe_loss(student, batch, training=True)
    gradients = tape.gradient(loss, student.trainable_variables)
    clip_seen_norm = np.sqrt(
        sum(np.sum(np.square(g.values if isinstance(g, tf.IndexedSlices) else g)) for g in gradients)
    )
    dense_gradient = flat([ops.convert_to_numpy(tf.convert_to_tensor(g)) for g in gradients])
    expected_delta = -dense_gradient * min(1.0, CLIP / clip_seen_norm)
    assert clip_seen_norm > 5 * CLIP

    def sgd():
        return keras.optimizers.SGD(learning_rate=1.0, global_clipnorm=CLIP)

    ref_delta, ref_logs = one_step(build_trainer("float32", initial_weights, inputs, sgd()), batch)
    np.testing.assert_allclose(ref_logs["grad_norm"], clip_seen_norm, rtol=1e-4)
    np.testing.assert_allclose(ref_delta, expected_delta, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ref_delta), CLIP, rtol=0.03)

    trainer = build_trainer("mixed_float16", initial_weights, inputs, sgd())
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    delta, logs = one_step(trainer, batch)
    # the step was applied (a non-finite scaled gradient would skip it and halve the scale)
    assert int(trainer.optimizer.iterations.numpy()) == 1
    assert float(trainer.optimizer.dynamic_scale.numpy()) == LOSS_SCALE
    update = np.linalg.norm(delta)
    msg = (
        f"mixed_float16 update norm {update:.6g}, float32 {np.linalg.norm(ref_delta):.6g}, clip {CLIP}; "
        f"grad_norm {logs['grad_norm']:.6g} vs float32 {ref_logs['grad_norm']:.6g}"
    )
    np.testing.assert_allclose(update, CLIP, rtol=0.03, err_msg=msg)
    # measured: update norms 0.1002666 (float32) and 0.1002665 (mixed_float16), grad_norm 1.53251
    # and 1.53238, |delta_fp16 - delta_fp32| / |delta_fp32| = 1.3e-3
    assert np.linalg.norm(delta - ref_delta) <= 0.02 * np.linalg.norm(ref_delta), msg
    np.testing.assert_allclose(logs["grad_norm"], ref_logs["grad_norm"], rtol=0.02, err_msg=msg)
    np.testing.assert_allclose(logs["loss"], ref_logs["loss"], rtol=1e-3, err_msg=msg)

    # Without scale_loss (the defect) the optimizer divides unscaled gradients by 2^15: clip_norm
    # sees a norm of ~4.7e-5, never clips, and the update is ~2^15 times smaller than the
    # unclipped one. The assertions above fail on such a step (measured: update norm 4.69e-5
    # against CLIP 0.1).
    unscaled = build_trainer("mixed_float16", initial_weights, inputs, sgd(), trainer_cls=UnscaledLossTrainer)
    bad_delta, bad_logs = one_step(unscaled, batch)
    bad_update = np.linalg.norm(bad_delta)
    assert bad_update < CLIP / 100
    np.testing.assert_allclose(bad_update, np.linalg.norm(dense_gradient) / LOSS_SCALE, rtol=0.05)
    np.testing.assert_allclose(bad_logs["grad_norm"], clip_seen_norm / LOSS_SCALE, rtol=0.05)


# ----------------------------------------------------------------------------- 2. 50 steps

STEPS = 50
# Measured (CPU, this seed), xe on the 32-example corpus: initial 4.6667; after 50 Adam(1e-3)
# steps float32 3.50676, mixed_float16 3.50647 (rel -8.2e-5), mixed_bfloat16 3.50608
# (rel -1.9e-4); last-epoch running loss 3.91439 / 3.91426 / 3.91424 (rel <= 4e-5). The
# tolerances leave ~50x headroom and stay far below the 1.16 nats the loss falls.
RELATIVE_TOLERANCE = {"float32": 0.0, "mixed_float16": 0.01, "mixed_bfloat16": 0.02}


@pytest.fixture(scope="module")
def trained(corpus, initial_weights):
    runs = {}

    def run(policy):
        if policy not in runs:
            inputs, _ = corpus
            trainer = build_trainer(policy, initial_weights, inputs, keras.optimizers.Adam(1e-3))
            initial = float(xe_loss(trainer.student, corpus))
            dataset = tf.data.Dataset.from_tensor_slices(corpus).batch(BATCH).repeat()
            history = trainer.fit(dataset, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)
            runs[policy] = {
                "initial": initial,
                "final": float(xe_loss(trainer.student, corpus)),
                "epoch_loss": history.history["loss"][-1],
                "steps": int(trainer.optimizer.iterations.numpy()),
            }
        return runs[policy]

    return run


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_training_tracks_float32(trained, policy):
    reference, result = trained("float32"), trained(policy)
    msg = f"{policy}: {result}; float32: {reference}"
    assert result["steps"] == STEPS, msg  # no float16 step skipped for overflow
    assert result["final"] < result["initial"] - 0.5, msg  # measured: 4.67 -> 3.51
    relative = abs(result["final"] - reference["final"]) / reference["final"]
    assert relative <= RELATIVE_TOLERANCE[policy], f"relative difference {relative:.2e}; {msg}"
    epoch_relative = abs(result["epoch_loss"] - reference["epoch_loss"]) / reference["epoch_loss"]
    assert epoch_relative <= RELATIVE_TOLERANCE[policy], f"epoch loss relative difference {epoch_relative:.2e}; {msg}"


# ----------------------------------------------------------------------------- 3. policy context


def test_precision_policy_restores_the_global_policy():
    with precision_policy("mixed_float16"):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        with precision_policy("mixed_bfloat16"):
            assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(RuntimeError):
        with precision_policy("mixed_float16"):
            raise RuntimeError("fails while building")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert keras.layers.Dense(2).dtype_policy.name == "float32"


# ----------------------------------------------------------------------------- toy trainers


def dense(units, name, input_dim=3, seed=0):
    layer = keras.layers.Dense(
        units,
        name=name,
        kernel_initializer=keras.initializers.RandomNormal(seed=seed),
        bias_initializer=keras.initializers.RandomNormal(seed=seed + 1),
    )
    layer.build((None, input_dim))
    return layer


class TwoTermTrainer(Trainer):
    """``fit`` (the student only) and ``match`` (the student and a head the trainer owns), each with
    its own normaliser; ``size`` is reported. Records what ``combine_gradients`` gets and returns."""

    needs_term_gradients = True
    WEIGHTS = {"fit": 0.3, "match": 2.0}

    def __init__(self, student):
        super().__init__(student, self.WEIGHTS, reported_terms=("size",))
        self.head = dense(1, "head", seed=10)
        self.received = []
        self.combined = []

    def compute_terms(self, data, training):
        x, y = data
        prediction = self.student(x)
        head = self.head(x)
        n = ops.cast(ops.shape(x)[0], "float32")
        terms = {
            "fit": LossTerm(ops.sum(ops.square(prediction - y)), n),
            "match": LossTerm(ops.sum(ops.square(head - 0.5 * prediction)), 2.0 * n),
            "size": LossTerm(ops.sum(ops.square(prediction)), n),
        }
        return terms, n

    def combine_gradients(self, term_gradients, variables):
        combined = super().combine_gradients(term_gradients, variables)
        if tf.executing_eagerly():
            self.received.append(
                {
                    "paths": [v.path for v in variables],
                    "gradients": {
                        name: [None if g is None else ops.convert_to_numpy(g) for g in grads]
                        for name, grads in term_gradients.items()
                    },
                }
            )
            self.combined.append([None if g is None else ops.convert_to_numpy(g) for g in combined])
        return combined


def toy_data(n=6, seed=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


def test_term_gradients_are_weighted_per_term_and_summed_by_default():
    x, y = toy_data()
    lr = 0.1
    deltas = {}
    for run_eagerly in (True, False):
        trainer = TwoTermTrainer(dense(1, "student"))
        trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), run_eagerly=run_eagerly)
        variables = trainer.trainable_variables
        student_vars, head_vars = trainer.student.trainable_variables, trainer.head.trainable_variables
        assert [v.path for v in variables] == [v.path for v in student_vars + head_vars]

        # independent reference: each weighted term differentiated on its own, and the weighted sum
        with tf.GradientTape(persistent=True) as tape:
            terms, _ = trainer.compute_terms((x, y), training=True)
            weighted = {name: w * terms[name].total / terms[name].count for name, w in TwoTermTrainer.WEIGHTS.items()}
            total = weighted["fit"] + weighted["match"]
        expected = {name: tape.gradient(value, variables) for name, value in weighted.items()}
        expected_total = [ops.convert_to_numpy(g) for g in tape.gradient(total, variables)]
        del tape

        before = flat([v.numpy() for v in variables])
        trainer.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0, shuffle=False)
        deltas[run_eagerly] = flat([v.numpy() for v in variables]) - before
        # the combined gradient is what the optimizer applied
        np.testing.assert_allclose(deltas[run_eagerly], -lr * flat(expected_total), rtol=1e-5, atol=1e-7)
        if not run_eagerly:
            continue

        assert len(trainer.received) == 1
        received = trainer.received[0]
        assert received["paths"] == [v.path for v in variables]
        assert set(received["gradients"]) == {"fit", "match"}  # weighted terms only, not "size"
        for name in ("fit", "match"):
            got = received["gradients"][name]
            assert len(got) == len(variables)
            for g, e, v in zip(got, expected[name], variables):
                if e is None:
                    assert g is None, f"{name}: {v.path}"
                else:
                    np.testing.assert_allclose(
                        g, ops.convert_to_numpy(e), rtol=1e-5, atol=1e-7, err_msg=f"{name}: {v.path}"
                    )
        # "fit" does not touch the head: its head gradients are None, and the sum skips them
        assert all(g is None for g in received["gradients"]["fit"][len(student_vars) :])
        for g, e in zip(trainer.combined[0], expected_total):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7)
    # the traced step computes the same update as the eager one
    np.testing.assert_allclose(deltas[False], deltas[True], rtol=1e-5, atol=1e-7)


class NormalisedTermsTrainer(Trainer):
    """Three terms with three normalisers: examples, masked examples, a constant. The student is
    trained with a head the trainer owns against a frozen layer the trainer also owns."""

    WEIGHTS = {"per_example": 1.0, "masked": 0.5}
    CONSTANT = 7.0

    def __init__(self, student):
        super().__init__(student, self.WEIGHTS, reported_terms=("per_constant",))
        self.head = dense(1, "head", seed=10)
        self.frozen = dense(1, "frozen", seed=20)
        self.frozen.trainable = False

    def compute_terms(self, data, training):
        x, y, mask = data["x"], data["y"], data["mask"]
        prediction = self.student(x)
        residual = ops.squeeze(prediction - y, -1)
        masked = ops.squeeze(self.head(x) - self.frozen(x), -1)
        n = ops.cast(ops.shape(x)[0], "float32")
        terms = {
            "per_example": LossTerm(ops.sum(ops.square(residual)), n),
            "masked": LossTerm(ops.sum(mask * ops.square(masked)), ops.sum(mask)),
            "per_constant": LossTerm(ops.sum(prediction), self.CONSTANT),
        }
        return terms, n


def test_terms_are_normalised_by_their_own_counts_and_frozen_layers_do_not_train():
    x, y = toy_data(n=12, seed=5)
    mask = np.array([1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0], "float32")  # batches of 4: 1, 3, 0 masked
    trainer = NormalisedTermsTrainer(dense(1, "student"))

    trainable = {id(v) for v in trainer.trainable_variables}
    assert all(id(v) in trainable for v in trainer.student.trainable_variables + trainer.head.trainable_variables)
    assert not any(id(v) in trainable for v in trainer.frozen.weights)
    assert len(trainer.trainable_variables) == 4
    assert {id(v) for v in trainer.non_trainable_weights} >= {id(v) for v in trainer.frozen.weights}

    # NumPy reference over the whole epoch (learning rate 0: the weights stay put); a running
    # term is the sum of its totals over the sum of its counts, not the mean of batch values
    def forward(layer, inputs):
        kernel, bias = (v.numpy() for v in layer.weights)
        return (inputs @ kernel + bias)[:, 0]

    residual = forward(trainer.student, x) - y[:, 0]
    masked = forward(trainer.head, x) - forward(trainer.frozen, x)
    expected = {
        "per_example": np.sum(residual**2) / 12,
        "masked": np.sum(mask * masked**2) / np.sum(mask),
        "per_constant": np.sum(forward(trainer.student, x)) / (3 * NormalisedTermsTrainer.CONSTANT),
    }
    # "loss" is the mean over steps of each step's weighted loss (each term normalised per batch)
    batches = [slice(i, i + 4) for i in range(0, 12, 4)]
    expected["loss"] = np.mean(
        [
            np.sum(residual[b] ** 2) / 4 + 0.5 * np.sum(mask[b] * masked[b] ** 2) / max(np.sum(mask[b]), 1.0)
            for b in batches
        ]
    )
    expected["tokens"] = 12.0

    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), run_eagerly=True)
    dataset = tf.data.Dataset.from_tensor_slices({"x": x, "y": y, "mask": mask}).batch(4)
    history = trainer.fit(dataset, epochs=1, verbose=0, shuffle=False).history
    for name, value in expected.items():
        np.testing.assert_allclose(history[name][-1], value, rtol=1e-5, err_msg=name)

    # one batch with a real learning rate: the frozen layer keeps its weights, the head moves
    frozen_before = [v.numpy().copy() for v in trainer.frozen.weights]
    head_before = [v.numpy().copy() for v in trainer.head.weights]
    trainer.optimizer.learning_rate.assign(0.1)
    trainer.fit(dataset.take(1), epochs=1, verbose=0, shuffle=False)
    for before, v in zip(frozen_before, trainer.frozen.weights):
        np.testing.assert_array_equal(before, v.numpy())
    assert any(not np.array_equal(before, v.numpy()) for before, v in zip(head_before, trainer.head.weights))


# ----------------------------------------------------------------------------- gradient accumulation


def _fit_batches(trainer, batches, steps_per_epoch=None):
    data = tf.data.Dataset.from_generator(
        lambda: iter(batches),
        output_signature=(
            {k: tf.TensorSpec([None, None], tf.int32) for k in batches[0][0]},
            tf.TensorSpec([None, None], tf.int32),
        ),
    )
    trainer.fit(data, epochs=1, steps_per_epoch=steps_per_epoch or len(batches), verbose=0, shuffle=False)


def _split(batch, sizes):
    inputs, target = batch
    out, start = [], 0
    for size in sizes:
        out.append(({k: v[start : start + size] for k, v in inputs.items()}, target[start : start + size]))
        start += size
    return out


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_accumulating_two_batches_equals_one_batch_of_both(batch, initial_weights, policy):
    """Three unequal parts (3, 1, 4 sentences: different token counts) accumulated into one update
    give the update of the 8-sentence batch; per-batch means averaged would not."""
    inputs, target = batch
    parts = _split(batch, [3, 1, 4])
    # SGD: the update is the gradient itself (Adam's first step, g / (|g| + eps), would turn the
    # float noise of gradients that are 0 in exact arithmetic into steps of the learning rate)
    optimizer = lambda: keras.optimizers.SGD(1.0)  # noqa: E731
    whole = build_trainer(policy, initial_weights, inputs, optimizer())
    _fit_batches(whole, [batch])
    accumulated = build_trainer(policy, initial_weights, inputs, optimizer())
    accumulated.accumulate_gradients(3)
    before = [v.numpy().copy() for v in accumulated.trainable_variables]
    _fit_batches(accumulated, parts[:2])
    # no update before the third batch
    assert int(accumulated.optimizer.iterations.numpy()) == 0
    np.testing.assert_array_equal(flat(before), flat([v.numpy() for v in accumulated.trainable_variables]))
    _fit_batches(accumulated, parts[2:])
    assert int(accumulated.optimizer.iterations.numpy()) == 1
    tolerance = 1e-6 if policy == "float32" else 2e-3
    np.testing.assert_allclose(
        flat([v.numpy() for v in accumulated.trainable_variables]),
        flat([v.numpy() for v in whole.trainable_variables]),
        atol=tolerance,
    )
    # the mean of the three per-batch gradients is a different update
    means = build_trainer("float32", initial_weights, inputs, optimizer())
    gradients = []
    for part in parts:
        with tf.GradientTape() as tape:
            terms, _ = means.compute_terms(part, training=True)
            loss = terms["xe"].total / terms["xe"].count
        gradients.append(tape.gradient(loss, means.trainable_variables))
    mean = [tf.add_n([tf.convert_to_tensor(g[i]) for g in gradients]) / 3 for i in range(len(gradients[0]))]
    means.optimizer.apply_gradients(zip(mean, means.trainable_variables))
    assert (
        np.abs(
            flat([v.numpy() for v in means.trainable_variables]) - flat([v.numpy() for v in whole.trainable_variables])
        ).max()
        > 20 * tolerance
    )


def test_accumulated_term_gradients_reach_the_hook_normalised_over_all_batches():
    x, y = toy_data(n=6)
    student = dense(1, "student", seed=0)
    whole, accumulated = TwoTermTrainer(student), TwoTermTrainer(dense(1, "student", seed=0))
    for trainer in (whole, accumulated):
        trainer.compile(optimizer=keras.optimizers.SGD(0.1))
        trainer(x[:1])
        trainer.optimizer.build(trainer.trainable_variables)
    accumulated.accumulate_gradients(2)
    whole.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0)
    accumulated.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1, verbose=0)  # 4 + 2
    for a, b in zip(accumulated.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_accumulation_refuses_several_replicas():
    trainer = TwoTermTrainer(dense(1, "student", seed=0))

    class Replicated:
        num_replicas_in_sync = 2

    trainer._distribute_strategy = Replicated()
    with pytest.raises(ValueError, match="one device"):
        trainer.accumulate_gradients(2)
