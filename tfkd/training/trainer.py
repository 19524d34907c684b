"""The trainer base: a student plus named loss terms, with a strategy-safe ``train_step``.

A trainer's :meth:`Trainer.compute_terms` returns named :class:`LossTerm` sums, each with its
own normaliser (target tokens, sentences, masked positions...). Each term's value is its sum
divided by the normaliser summed over the *global* batch, so the all-reduced gradient of a
multi-replica step equals the one-device gradient of the same batch. The optimised loss is
``sum(weight * value)`` over ``loss_weights`` (the spec's ``distill.loss_weights``); other
terms (``nll``) are only reported.

Under a strategy the step sums the gradients over the replicas itself (:func:`all_reduced`)
before anything reads them, so the hook below, the reported gradient norm and ``clip_norm``
see the global batch's gradient (Keras' optimizer clips before it sums; its own sum is
turned off).

Gradients per term are available to a hook: a trainer that sets
``needs_term_gradients = True`` gets :meth:`combine_gradients` called with one gradient list
per weighted term (the gated mask-task method keeps the KD gradient of a module only where it
agrees with the NMT gradient); the default sums them with the weights. Otherwise one gradient
of the weighted sum is taken.

What trains is ``trainer.trainable_variables``: the student's and any heads the trainer owns;
frozen teachers and backbones (``trainable = False``) are excluded. Under ``mixed_float16``
the optimizer is Keras' ``LossScaleOptimizer`` (``compile`` wraps it) and the step scales the
loss with ``optimizer.scale_loss`` before differentiating, so float16 backward passes do not
underflow and ``clip_norm`` sees the true gradients.

Losses are reported through ``keras.metrics.Mean`` trackers (a raw tensor returned from
``train_step`` reads as 0 under a strategy).

With :meth:`Trainer.accumulate_gradients` (``train.accumulate: N``, fairseq's
``--update-freq``) a step is one batch, and the optimizer updates every N batches with the
gradient of their union: each weighted term's gradient is summed unnormalised over the N
batches and divided by the term's count over all N, so the update equals the one a batch N
times as large would give (not the mean of N per-batch means).
"""

import types
from typing import NamedTuple

import keras
import tensorflow as tf
from keras import ops


def global_sum(value):
    """Sum of ``value`` over all replicas (identity without a strategy)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def all_reduced(gradients):
    """``gradients`` (a list, ``None`` where a variable has none) summed over the replicas: the
    gradient of the global batch, the same on every replica (identity without a strategy)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return gradients
    present = [g for g in gradients if g is not None]
    reduced = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, present) if present else ())
    return [next(reduced) if g is not None else None for g in gradients]


def _per_worker(logs):
    """A step's logs as Keras can reduce them under a multi-worker strategy: Keras 3 averages
    each value there over its first axis, which a scalar does not have (tensorflow#72388), so
    each becomes a vector of one."""
    from tfkd.distribute import is_multi_worker

    if not is_multi_worker(tf.distribute.get_strategy()):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


class LossTerm(NamedTuple):
    """A loss summed over this replica's batch and what it is normalised by (its count)."""

    total: object
    count: object


class Trainer(keras.Model):
    """Base of every method's training model.

    Args:
        student: the model being trained (``trainer.student``).
        loss_weights: ``{term name: weight}`` of the optimised terms.
        reported_terms: other term names to report (computed by :meth:`compute_terms`).
    """

    needs_term_gradients = False

    def __init__(self, student, loss_weights, reported_terms=(), **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.loss_weights = dict(loss_weights)
        names = [*self.loss_weights, *[t for t in reported_terms if t not in self.loss_weights]]
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.term_trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.token_counter = keras.metrics.Sum(name="tokens")
        self.grad_norm_tracker = keras.metrics.Mean(name="grad_norm")
        self.accumulate = 1
        # accumulators: not Keras-tracked (they are not weights, and a checkpoint falls between
        # two updates, where they are zero)
        self._sums = types.SimpleNamespace(gradients=None, counts=None, batches=None)

    def accumulate_gradients(self, batches):
        """Update every ``batches`` batches with the gradient of their union (call after the
        trainer and its optimizer are built; one device only)."""
        self.accumulate = int(batches)
        if self.accumulate == 1:
            return
        if getattr(self, "distribute_strategy", tf.distribute.get_strategy()).num_replicas_in_sync > 1:
            raise ValueError(
                "gradient accumulation runs on one device (the replicas of a strategy already multiply the batch)"
            )
        variables = self.trainable_variables
        self._sums.gradients = {
            name: [tf.Variable(tf.zeros(v.shape, "float32"), trainable=False) for v in variables]
            for name in self.loss_weights
        }
        self._sums.counts = {name: tf.Variable(0.0, trainable=False) for name in self.loss_weights}
        self._sums.batches = tf.Variable(0, dtype=tf.int64, trainable=False)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds a model before fit/evaluate from the first batch, averaged over the
        # replicas under a strategy, which fails on a multi-worker batch (a dict of pieces padded
        # differently per replica). A tfkd trainer is already built on a real batch
        # (tfkd.stages.compile_and_build), so there is nothing to build.
        if all(layer.built for layer in self._flatten_layers()) and (self.optimizer is None or self.optimizer.built):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        # the train step sums the gradients over the replicas itself (all_reduced), so that
        # combine_gradients, the reported gradient norm and clip_norm see the global batch's
        # gradient; Keras' optimizer would sum them again, and clips before it sums
        for optimizer in (self.optimizer, getattr(self.optimizer, "inner_optimizer", None)):
            if optimizer is not None and hasattr(optimizer, "_all_reduce_sum_gradients"):
                optimizer._all_reduce_sum_gradients = list

    @property
    def metrics(self):
        return [self.loss_tracker, *self.term_trackers.values(), self.token_counter, self.grad_norm_tracker]

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def compute_terms(self, data, training):
        """``({name: LossTerm}, tokens)`` for a batch; ``tokens`` is the batch's size for
        throughput logs (target tokens for token-level tasks)."""
        raise NotImplementedError

    def combine_gradients(self, term_gradients, variables):
        """Hook: ``{term: [gradient per variable]}`` (each already weighted) -> one gradient
        list. Called when ``needs_term_gradients``, and for every accumulated update
        (``accumulate_gradients``); the default sums them."""
        combined = []
        for parts in zip(*term_gradients.values()):
            parts = [g for g in parts if g is not None]
            combined.append(tf.add_n(parts) if parts else None)
        return combined

    def _values(self, terms):
        values = {}
        for name, term in terms.items():
            values[name] = term.total / ops.maximum(global_sum(ops.cast(term.count, "float32")), 1.0)
        return values

    def train_step(self, data):
        if self.accumulate > 1:
            return self._accumulating_step(data)
        variables = self.trainable_variables
        with tf.GradientTape(persistent=self.needs_term_gradients) as tape:
            terms, tokens = self.compute_terms(data, training=True)
            values = self._values(terms)
            weighted = {name: weight * values[name] for name, weight in self.loss_weights.items() if name in values}
            loss = tf.add_n(list(weighted.values()))
            if self.needs_term_gradients:
                scaled_terms = {name: self.optimizer.scale_loss(value) for name, value in weighted.items()}
            else:
                scaled = self.optimizer.scale_loss(loss)
        if self.needs_term_gradients:
            term_gradients = {
                name: all_reduced(tape.gradient(value, variables)) for name, value in scaled_terms.items()
            }
            del tape
            gradients = self.combine_gradients(term_gradients, variables)
        else:
            gradients = all_reduced(tape.gradient(scaled, variables))
        self._track_grad_norm(gradients)
        self.optimizer.apply_gradients(zip(gradients, variables))
        # each replica's loss is its share of the global batch's: the mean over replicas of
        # replicas * share is the global loss
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.loss_tracker.update_state(loss * replicas)
        return self._track(terms, tokens)

    def _accumulating_step(self, data):
        """One batch of an accumulated update: add each weighted term's unnormalised gradient
        and count to the sums; on the last batch of N, apply sum / count per term and reset."""
        variables = self.trainable_variables
        sums = self._sums
        with tf.GradientTape(persistent=True) as tape:
            terms, tokens = self.compute_terms(data, training=True)
            values = self._values(terms)
            loss = tf.add_n([weight * values[name] for name, weight in self.loss_weights.items() if name in values])
            # differentiated per this batch's count (the magnitudes a float16 backward pass sees
            # without accumulation), then multiplied back by it in float32: the sum of unnormalised
            # gradients, without its overflow
            counts = {name: ops.maximum(ops.cast(terms[name].count, "float32"), 1.0) for name in terms}
            scaled = {
                name: self.optimizer.scale_loss(weight * ops.cast(terms[name].total, "float32") / counts[name])
                for name, weight in self.loss_weights.items()
                if name in terms
            }
        touched = [False] * len(variables)  # which variables any term reaches (known when tracing)
        for name, value in scaled.items():
            for i, (total, gradient) in enumerate(zip(sums.gradients[name], tape.gradient(value, variables))):
                if gradient is None:
                    continue
                touched[i] = True
                if isinstance(gradient, tf.IndexedSlices):
                    total.scatter_add(
                        tf.IndexedSlices(
                            tf.cast(gradient.values, "float32") * counts[name], gradient.indices, gradient.dense_shape
                        )
                    )
                else:
                    total.assign_add(tf.cast(gradient, "float32") * counts[name])
            sums.counts[name].assign_add(ops.cast(terms[name].count, "float32"))
        del tape
        sums.batches.assign_add(1)

        def update():
            per_term = {
                name: [
                    total / tf.maximum(sums.counts[name], 1.0) if used else None
                    for total, used in zip(sums.gradients[name], touched)
                ]
                for name in scaled
            }
            gradients = self.combine_gradients(per_term, variables)  # the default sums them
            self._track_grad_norm(gradients)
            self.optimizer.apply_gradients([(g, v) for g, v in zip(gradients, variables) if g is not None])
            for name in scaled:
                for total in sums.gradients[name]:
                    total.assign(tf.zeros_like(total))
                sums.counts[name].assign(0.0)
            return tf.constant(True)

        tf.cond(tf.equal(sums.batches % self.accumulate, 0), update, lambda: tf.constant(False))
        self.loss_tracker.update_state(loss)
        return self._track(terms, tokens)

    def _track_grad_norm(self, gradients):
        # the norm clip_norm sees: after the loss scale is divided out
        # IndexedSlices (embedding lookups) count by their values, as the optimizer's clip does;
        # densifying them would cost a scatter of the whole table every step
        norm = tf.linalg.global_norm(
            [
                tf.cast(g.values if isinstance(g, tf.IndexedSlices) else g, tf.float32)
                for g in gradients
                if g is not None
            ]
        )
        scale = getattr(self.optimizer, "dynamic_scale", None)
        if scale is not None:
            norm = norm / tf.cast(scale, tf.float32)
        self.grad_norm_tracker.update_state(norm)

    def _track(self, terms, tokens, training=True):
        # per-replica means weighted by their counts aggregate to the global mean
        for name, term in terms.items():
            if name in self.term_trackers:
                count = ops.cast(term.count, "float32")
                self.term_trackers[name].update_state(term.total / ops.maximum(count, 1e-9), sample_weight=count)
        self.token_counter.update_state(ops.cast(tokens, "float32"))
        # validation reports only the terms its batches have (no teacher columns); its "loss" is
        # the weighted sum of the running means, renormalised over the terms present
        if training:
            # every metric, so that Keras reads them aggregated over replicas (it does when the
            # step's logs have exactly the metrics' names)
            return _per_worker({metric.name: metric.result() for metric in self.metrics})
        present = {name: w for name, w in self.loss_weights.items() if name in terms}
        total_weight = sum(present.values()) or 1.0
        logs = {"loss": sum(w * self.term_trackers[name].result() for name, w in present.items()) / total_weight}
        logs.update({name: self.term_trackers[name].result() for name in self.term_trackers if name in terms})
        logs["tokens"] = self.token_counter.result()
        return _per_worker(logs)

    def test_step(self, data):
        terms, tokens = self.compute_terms(data, training=False)
        return self._track(terms, tokens, training=False)


class SupervisedTrainer(Trainer):
    """Maximum likelihood on the references: the task's own terms (``xe`` optimised, ``nll``
    reported). The base of trainers that add teacher terms to it.

    Args:
        student: the student model.
        task: the run's :class:`tfkd.tasks.Task` (it computes the supervised terms).
        label_smoothing: epsilon of the cross-entropy.
        loss_weights: ``{term: weight}``; default ``{"xe": 1.0}``.
    """

    def __init__(self, student, task, label_smoothing=0.1, loss_weights=None, reported_terms=("nll",), **kwargs):
        super().__init__(student, loss_weights or {"xe": 1.0}, reported_terms=reported_terms, **kwargs)
        self.task = task
        self.label_smoothing = label_smoothing

    def compute_terms(self, data, training):
        _, terms, tokens = self.task.supervised_terms(self.student, data, training, self.label_smoothing)
        return terms, tokens
