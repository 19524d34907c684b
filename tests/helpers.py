"""Helpers several test files share: the tiny real-data spec, running the CLI (forked from a
process that has imported TensorFlow, or fresh), a method's spec trained in bfloat16, serving
an export in a process that can import only tensorflow + tensorflow_text, a NumPy
greedy-decoding reference, LightPAFF's loss checks and the tasks' fake run context."""

import json
import os
import subprocess
import sys

import forked_cli
import numpy as np

# the tests mirror the package tree (tests/methods/soft_target/...); these helpers stay here
TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
# two_stage's own stages, in order, for a generative objective (GPT-2, MASS) whose run
# pre-trains its teacher and scores it on test
GENERATIVE_METHOD_STAGES = ["teacher_pretrain", "teacher_finetune", "teacher_evaluate", "pretrain_kd", "pretrain_mle"]


TINY = """\
version: 1
name: {name}
run_dir: {run_dir}
imports: [user_layers]
data:
  dir: ${{TFKD_DATA_DIR}}/multi30k_deen
  src_lang: de
  tgt_lang: en
  train_limit: 400
  valid_limit: 40
  test_limit: 30
  max_tokens: 40
  batch_tokens: 1024
  source_tokenizer: {{vocab_size: 600}}
  target_tokenizer: {{vocab_size: 500}}
student:
  kind: transformer
  encoder_layers: 1
  decoder_layers: 1
  hidden_dim: 32
  intermediate_dim: 64
  num_heads: 2
  encoder_layer: {{kind: gated_residual_encoder}}
train:
  steps: {steps}
  checkpoint_every: {every}
  log_every: 2
  learning_rate: 2.0
  warmup_steps: 20
  valid_metric_examples: 10
decode: {{beam_size: 2, max_length_b: 5}}
# the run report (tests/report/ check it on runs of their own) would add seconds to every run
report: {{enabled: false}}
"""


def write_spec(tmp_path, name, steps=6, every=3):
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY.format(name=name, run_dir=tmp_path / "runs", steps=steps, every=every))
    # user_layers.py lives next to the tests; imports are resolved relative to the spec
    (tmp_path / "user_layers.py").write_text(open(os.path.join(REPO, "tests", "user_layers.py")).read())
    return str(path)


def tfkd(*args, env_extra=None, cwd=None, fresh=False):
    """``tfkd ARGS`` as a ``CompletedProcess`` (text stdout and stderr), forked from a process
    that has imported TensorFlow (:mod:`forked_cli`); with ``fresh``, a new ``python -m
    tfkd.cli``, for what a forked command cannot show (its start-up)."""
    env = dict(os.environ, TFKD_QUIET_PROGRESS="1", **(env_extra or {}))
    env["TFKD_DATA_DIR"] = os.path.abspath(env.get("TFKD_DATA_DIR", os.path.join(REPO, "..", "shared", "data")))
    if not fresh:
        return forked_cli.run(args, env, cwd=cwd, timeout=900)
    return subprocess.run(
        [sys.executable, "-m", "tfkd.cli", *args], capture_output=True, text=True, env=env, timeout=900, cwd=cwd
    )


def train_in_bfloat16(spec_file, sets, stages, run, students, env_extra=None):
    """A method's shrunk spec (``sets``: its ``--set`` flags) through ``stages`` with the one
    switch ``train.precision=mixed_bfloat16``, which applies to every stage that builds a model,
    the teachers' included. Checks that each stage finished with finite numbers and that each
    of ``students`` was built under Keras' ``mixed_bfloat16`` (its saved config's policy);
    returns each stage's results."""
    flags = [a for s in [*sets, "train.precision=mixed_bfloat16"] for a in ("--set", s)]
    out = tfkd("run", spec_file, *flags, "--stages", ",".join(stages), env_extra=env_extra)
    assert out.returncode == 0, out.stderr[-4000:]
    return check_bfloat16_run(run, stages, students)


def check_bfloat16_run(run, stages, students):
    """The checks of :func:`train_in_bfloat16` on a finished run: ``stages`` finished with
    finite numbers, ``students`` were built under ``mixed_bfloat16``; returns each stage's results."""
    results = {stage: json.load(open(os.path.join(run, stage, "stage.json")))["results"] for stage in stages}
    for stage, values in results.items():
        numbers = [v for v in values.values() if isinstance(v, float)]
        assert np.all(np.isfinite(numbers)), (stage, values)
    for student in students:
        config = json.load(open(os.path.join(run, student, "student.json")))
        assert config["config"]["dtype"]["config"]["name"] == "mixed_bfloat16", student
    return results


def tiny_transformer(source_vocabulary, target_vocabulary, seed, **options):
    """A built one-layer Transformer student of width 8 (``options`` override its settings)."""
    import keras

    from tfkd.models import TransformerSeq2Seq

    keras.utils.set_random_seed(seed)
    settings = dict(
        encoder_layers=1,
        decoder_layers=1,
        hidden_dim=8,
        intermediate_dim=16,
        num_heads=2,
        dropout=0.0,
        tie_embeddings=False,
    )
    model = TransformerSeq2Seq(source_vocabulary, target_vocabulary, **{**settings, **options})
    model({"source_ids": np.array([[3, 4]], np.int32), "decoder_ids": np.array([[2]], np.int32)})
    return model


def tiny_gpt2(vocabulary_size, seed, num_layers=1, max_sequence_length=48):
    """A built GPT-2 language model of width 16 (2 heads, feed-forward 32, no dropout)."""
    import keras
    import tensorflow as tf

    from tfkd.models.gpt2_lm import GPT2LM

    keras.utils.set_random_seed(seed)
    model = GPT2LM(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        dropout=0.0,
        max_sequence_length=max_sequence_length,
    )
    model({"token_ids": tf.ones([1, 2], tf.int32), "padding_mask": tf.ones([1, 2], tf.bool)})
    return model


def weights_file_arrays(path):
    """``{dataset path: array}`` of a Keras ``.weights.h5`` file (to compare two bit for bit)."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        # visititems stops at the first callback that returns something other than None
        f.visititems(lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return arrays


def reference_greedy(model, source, special, max_length):
    """Step-by-step argmax over the full decoder, in NumPy (never pad or BOS)."""
    hidden, mask = model.encode(source)
    rows = []
    for b in range(source.shape[0]):
        tokens = [special.bos]
        while len(tokens) <= max_length and (len(tokens) == 1 or tokens[-1] != special.eos):
            logits = model.decode(np.array([tokens]), hidden[b : b + 1], mask[b : b + 1]).numpy()[0, -1]
            logits[[special.pad, special.bos]] = -np.inf
            tokens.append(int(np.argmax(logits)))
        rows.append((tokens[1:] + [special.pad] * max_length)[:max_length])
    return np.array(rows)


# runs in a fresh interpreter; tfkd, keras_hub and the user's layer module cannot be imported
SERVE_ONLY = r"""
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tfkd", "keras_hub", "user_layers"):
            raise ImportError(f"{name} must not be needed to serve")
        return None

sys.meta_path.insert(0, Block())
import tensorflow as tf
import tensorflow_text  # noqa: F401

serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
result = serve(**{sys.argv[3]: tf.constant(json.loads(sys.argv[2]))})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tfkd", "keras_hub", "user_layers"))


def plain(value):  # strings decoded, numbers as they are
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value.decode() if isinstance(value, bytes) else value


print(json.dumps({**{name: plain(value.numpy().tolist()) for name, value in result.items()}, "loaded": loaded}))
"""


def serve_only(saved_model, sentences, cwd, input_name="source"):
    """Every output of the export's ``serving_default`` on ``sentences`` (fed as
    ``input_name``), as lists, and ``"loaded"``: the tfkd/keras-hub modules serving imported."""
    out = subprocess.run(
        [sys.executable, "-c", SERVE_ONLY, str(saved_model), json.dumps(sentences), input_name],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def check_per_position_kd(trainer, student, teacher, inputs, labels, kept, lam):
    """LightPAFF's per-position distillation (appendix eqs. 3, 4, 6, 7) computed by ``trainer``
    on ``(inputs, labels)`` against NumPy: the KL and NLL summed over the ``kept`` positions,
    each normalised by their count, weighted ``1 - lam`` and ``lam``; only the student trains."""
    terms, tokens = trainer.compute_terms((inputs, labels), training=True)
    log_p = log_softmax(np.asarray(student(inputs), np.float64))
    log_q = log_softmax(np.asarray(teacher(inputs), np.float64))
    kl = (np.exp(log_q) * (log_q - log_p)).sum(-1)
    nll = -np.take_along_axis(log_p, np.maximum(labels, 0)[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(terms["kd"].total), kl[kept].sum(), rtol=1e-4)
    np.testing.assert_allclose(float(terms["nll"].total), nll[kept].sum(), rtol=1e-5)
    assert float(terms["kd"].count) == float(tokens) == kept.sum()
    values = trainer._values(terms)
    loss = sum(w * float(values[name]) for name, w in trainer.loss_weights.items())
    np.testing.assert_allclose(loss, (1 - lam) * nll[kept].mean() + lam * kl[kept].mean(), rtol=1e-4)
    assert not teacher.trainable and {id(v) for v in trainer.trainable_variables} == {
        id(v) for v in student.trainable_variables
    }


def check_lambda_zero_is_mle(make_student, task, inputs, labels, teacher_logits_shape, label_smoothing=0.0):
    """One SGD step of ``FinetuneDistiller`` with a teacher and ``{xe: 1}`` equals the plain
    supervised step (loss and weights), and the teacher is never called."""
    import keras
    import tensorflow as tf

    from tfkd.methods.two_stage.finetune import FinetuneDistiller
    from tfkd.training.trainer import SupervisedTrainer

    calls = []

    class Teacher(keras.Model):
        def call(self, inputs, training=False):
            calls.append(1)
            return tf.zeros(teacher_logits_shape)

    results = {}
    for name, trainer_cls, kwargs in (
        ("kd", FinetuneDistiller, {"teacher": Teacher()}),
        ("mle", SupervisedTrainer, {}),
    ):
        trainer = trainer_cls(make_student(), task, label_smoothing=label_smoothing, loss_weights={"xe": 1.0}, **kwargs)
        trainer.compile(optimizer=keras.optimizers.SGD(0.5))
        logs = trainer.train_on_batch(inputs, labels, return_dict=True)
        results[name] = ([v.numpy() for v in trainer.student.trainable_variables], logs["loss"])
    assert calls == []
    np.testing.assert_allclose(results["kd"][1], results["mle"][1], rtol=1e-6)
    for a, b in zip(results["kd"][0], results["mle"][0]):
        np.testing.assert_allclose(a, b, atol=1e-6)


class FakeContext:
    """What the task reads of a run context: the spec, memoised artefacts and the tokenizers."""

    def __init__(self, spec, tokenizers):
        self.spec = spec
        self._tokenizers = tokenizers
        self._memo = {}

    def memo(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def tokenizers(self):
        return self._tokenizers
