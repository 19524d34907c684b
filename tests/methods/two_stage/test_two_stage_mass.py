"""LightPAFF for MASS (``two_stage`` on ``task: translation``): MASS batches, the seq2seq KD
loss against NumPy over target positions only, lambda 0 is MLE, the pre-trained Transformer
handed whole to fine-tuning, the stages the spec's settings add, and its one-line errors."""

import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import GENERATIVE_METHOD_STAGES, REPO, check_lambda_zero_is_mle, check_per_position_kd

from tfkd import registry
from tfkd.context import RunContext
from tfkd.data import MASK, RESERVED_TOKENS, SpecialIds, make_tokenizer
from tfkd.methods.two_stage.finetune import FinetuneDistiller
from tfkd.methods.two_stage.mass import MaskedSeq2Seq, masked_seq2seq_dataset, tokenize_sentences
from tfkd.models.transformer import TransformerSeq2Seq
from tfkd.plan import plan_run
from tfkd.spec import SpecError, load_spec
from tfkd.tasks.translation import TranslationTask

CPU_SPEC = os.path.join(REPO, "specs", "lightpaff_mass_deen_cpu.yaml")
PAPER_SPEC = os.path.join(REPO, "specs", "lightpaff_mass_ende.yaml")
PAD = 0


def transformer(seed, layers=1, vocab=40):
    keras.utils.set_random_seed(seed)
    model = TransformerSeq2Seq(
        vocab,
        vocab,
        encoder_layers=layers,
        decoder_layers=layers,
        hidden_dim=16,
        intermediate_dim=32,
        num_heads=2,
        dropout=0.0,
        share_embeddings=True,
        pad_id=PAD,
    )
    model({"source_ids": tf.ones([1, 2], tf.int32), "decoder_ids": tf.ones([1, 2], tf.int32)})
    return model


def mass_batch():
    """Two MASS examples: targets only on the segment, padding elsewhere."""
    source = np.array([[5, 4, 4, 8, 9, 6], [7, 4, 3, 0, 0, 0]], np.int32)
    decoder = np.array([[4, 4, 6, 5, 4, 4], [2, 7, 4, 0, 0, 0]], np.int32)
    target = np.array([[0, 0, 5, 9, 0, 0], [7, 11, 0, 0, 0, 0]], np.int32)
    return {"source_ids": source, "decoder_ids": decoder}, target


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    words = "ein mann fährt fahrrad auf der straße a man rides a bike on the road zwei hunde two dogs".split()
    path = tmp_path_factory.mktemp("vocab") / "shared.vocab"
    path.write_text("\n".join(RESERVED_TOKENS + sorted(set(words))) + "\n")
    return make_tokenizer(str(path))


@pytest.mark.parametrize("lam", [0.7, 1.0])
def test_masked_seq2seq_kd_is_one_minus_lambda_mle_plus_lambda_kl_over_the_segment(lam):
    student, teacher = transformer(0), transformer(1, layers=2)
    inputs, target = mass_batch()
    trainer = FinetuneDistiller(student, TranslationTask(), loss_weights={"xe": 1 - lam, "kd": lam}, teacher=teacher)
    # appendix eq. 4: the predicted segment only (padding and the unmasked positions add nothing)
    kept = target != PAD
    assert kept.sum() == 4
    check_per_position_kd(trainer, student, teacher, inputs, target, kept, lam)


def test_lambda_zero_is_mle_on_translation_batches_and_never_runs_the_teacher():
    inputs, target = mass_batch()
    check_lambda_zero_is_mle(lambda: transformer(0), TranslationTask(), inputs, target, [2, 6, 40], label_smoothing=0.1)


def test_mass_batches_mask_half_of_each_monolingual_sentence_and_remask_every_pass(tokenizer):
    lines = ["ein mann fährt fahrrad auf der straße", "a man rides a bike on the road", "zwei hunde", "", "two dogs"]
    ids = tokenize_sentences(tokenizer, lines, max_length=6, name="test")
    assert ids.nrows() == 4 and ids.row_lengths().numpy().max() == 6  # the empty line dropped, one cut
    special = SpecialIds.of(tokenizer)
    mask = tokenizer.token_to_id(MASK)
    sentences = {tuple(row) for row in ids.numpy().tolist()}

    def one_pass(ds):
        return [(x["source_ids"].numpy(), x["decoder_ids"].numpy(), y.numpy()) for x, y in ds.take(4)]

    train = masked_seq2seq_dataset(ids, tokenizer, batch_size=1, max_length=6, segment_rate=0.5, training=True, seed=3)
    seen = one_pass(train) + one_pass(train.skip(4))
    for _source, decoder, target in seen:
        segment = np.flatnonzero(target[0] != special.pad)
        n = int((decoder[0] != special.pad).sum())
        assert len(segment) == max(1, round(n / 2)) and (np.diff(segment) == 1).all()
        # the target is the sentence's segment; the decoder reads it shifted, [MASK] elsewhere
        sentence = [s for s in sentences if len(s) == n and all(s[m] == target[0][m] for m in segment)]
        assert sentence
        shifted = [special.bos] + list(sentence[0][:-1])
        assert all(decoder[0][m] == shifted[m] for m in segment)
        assert all(decoder[0][m] == mask for m in range(n) if m not in segment)
    # validation batches are masked the same way every time
    valid = masked_seq2seq_dataset(ids, tokenizer, batch_size=2, max_length=6, segment_rate=0.5, training=False)
    a, b = one_pass(valid), one_pass(valid)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


def test_the_mass_teacher_is_a_shared_vocabulary_transformer_of_teacher_pretrain_sizes(tokenizer):
    spec = load_spec(CPU_SPEC)
    settings = spec.distill.teacher_pretrain
    context = types.SimpleNamespace(tokenizers=lambda: types.SimpleNamespace(source=tokenizer, target=tokenizer))
    teacher = MaskedSeq2Seq().new_teacher(context, settings)
    assert (teacher.encoder_layers, teacher.decoder_layers, teacher.hidden_dim) == (3, 3, 256)
    assert teacher.share_embeddings and teacher.source_vocab_size == tokenizer.vocabulary_size()
    task = TranslationTask()
    assert task.build_teacher(spec, context.tokenizers(), teacher) is teacher
    other = types.SimpleNamespace(source=tokenizer, target=types.SimpleNamespace(vocabulary_size=lambda: 7))
    with pytest.raises(Exception, match="the teacher has vocabularies of"):
        task.build_teacher(spec, other, teacher)
    # the saved network (config + weights) comes back whole: what fine-tuning starts from
    model = transformer(4)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    restored({"source_ids": tf.ones([1, 2], tf.int32), "decoder_ids": tf.ones([1, 2], tf.int32)})
    inputs, _ = mass_batch()
    assert not np.allclose(restored(inputs), model(inputs))
    restored.set_weights(model.get_weights())
    np.testing.assert_allclose(restored(inputs), model(inputs), atol=1e-6)


def test_the_cpu_spec_pretrains_its_teacher_and_compares_table_5_and_table_7_rows_by_default():
    spec = load_spec(CPU_SPEC)
    assert plan_run(spec).with_role("method") == GENERATIVE_METHOD_STAGES
    variants = ["ft_kd_only", "mass_small", "pt_kd_only", "pt_mle_ft_kd"]
    assert plan_run(spec).defaults() == [
        "vocab",
        *GENERATIVE_METHOD_STAGES,
        "baseline",
        "baseline_evaluate",
        *[stage for v in variants for stage in (v, f"{v}_evaluate")],
        "train",
        "evaluate",
    ]
    method = registry.lookup("method", "two_stage")
    # lightpaff.txt Table 7: which pre-training each student starts from, and whether it
    # distils in fine-tuning (the teacher's fine-tuned model is an input only then)
    starts = {
        None: (("pretrain_kd", "teacher_finetune"), {"xe": 0.5, "kd": 0.5}),  # (6) PT + KD, FT + KD
        "ft_kd_only": (("teacher_finetune",), {"xe": 0.5, "kd": 0.5}),  # (2) FT + KD alone
        "mass_small": (("pretrain_mle",), {"xe": 1.0}),  # (3) PT, FT
        "pt_kd_only": (("pretrain_kd",), {"xe": 1.0}),  # (4) PT + KD, FT
        "pt_mle_ft_kd": (("pretrain_mle", "teacher_finetune"), {"xe": 0.5, "kd": 0.5}),  # (5) PT, FT + KD
    }
    for variant, (inputs, weights) in starts.items():
        own = spec.variant(variant) if variant else spec
        assert method.train_inputs(RunContext(own)) == inputs, variant
        assert method.loss_weights(own.distill) == weights, variant
    assert spec.distill.pretrain.kd_lambda == 0.7 and spec.distill.pretrain.segment_rate == 0.5


def test_a_teacher_chosen_on_valid_is_scored_on_test_without_training_it_again(data_dir):
    """``teacher_finetune`` scores the validation split only, so its key does not read
    ``evaluate.splits``: a run that searched the teacher's settings on valid hands its teacher
    to the run that reads test, where ``teacher_evaluate`` (keyed by the splits) scores it."""
    from tfkd.runner import Runner

    final = load_spec(CPU_SPEC)
    search = load_spec(CPU_SPEC, ["evaluate.splits=[valid]"])
    assert "teacher_evaluate" not in plan_run(search).names
    final_runner, search_runner = Runner(final, plan_run(final)), Runner(search, plan_run(search))
    for name in ("teacher_pretrain", "teacher_finetune"):
        assert final_runner.key(name) == search_runner.key(name), name
    assert final_runner.stages["teacher_evaluate"].config(final)["data"] != {}
    both = load_spec(CPU_SPEC, ["evaluate.splits=[valid, test]"])
    assert Runner(both, plan_run(both)).key("teacher_evaluate") != final_runner.key("teacher_evaluate")
    assert Runner(both, plan_run(both)).key("teacher_finetune") == final_runner.key("teacher_finetune")


def test_the_paper_spec_keeps_the_papers_sizes():
    spec = load_spec(PAPER_SPEC)
    teacher = spec.distill.teacher_pretrain
    assert (teacher.num_layers, teacher.decoder_layers, teacher.hidden_dim, teacher.num_heads) == (6, 6, 1024, 16)
    student = spec.student_config()
    assert (student.encoder_layers, student.decoder_layers, student.hidden_dim, student.num_heads) == (6, 4, 512, 8)
    assert spec.distill.pretrain.kd_lambda == 0.7 and spec.data.train_limit == 100000


@pytest.mark.parametrize(
    "override,message",
    [
        ("data.shared_vocab=false", "data.shared_vocab: masked seq2seq pre-training reads both languages"),
        ("distill.teacher=cache", "distill.teacher: masked seq2seq distillation runs the teacher online"),
        ("teacher={checkpoint: bert_base_en, kind: bert}", "teacher: no MASS checkpoint can be read"),
        ("distill.teacher_pretrain=null", "distill.teacher_pretrain: a seq2seq teacher is pre-trained by tfkd"),
        ("distill.finetune.unlabeled=x.txt", "distill.finetune.unlabeled: applies to classification only"),
        ("distill.pretrain.segment_rate=0", "distill.pretrain.segment_rate"),
    ],
)
def test_bad_mass_settings_are_one_line_errors(override, message):
    with pytest.raises(SpecError) as e:
        load_spec(CPU_SPEC, [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_gpt2_teacher_has_no_decoder_layers():
    spec = os.path.join(REPO, "specs", "lightpaff_gpt2_wikitext2_cpu.yaml")
    with pytest.raises(SpecError, match="distill.teacher_pretrain.decoder_layers: applies to seq2seq teachers"):
        load_spec(spec, ["distill.teacher_pretrain.decoder_layers=2"])


def test_a_command_that_skips_teacher_pretrain_loads_its_transformer(tmp_path):
    """A later command (teacher_pretrain done before, so tfkd.models.transformer not imported
    when teacher_finetune loads the backbone) rebuilds the pre-trained Transformer; it said
    "Could not locate class 'TransformerSeq2Seq'" with a traceback."""
    import json
    import subprocess
    import sys

    from tfkd.methods.two_stage.teacher import BACKBONE_CONFIG, BACKBONE_WEIGHTS

    teacher = transformer(3)
    teacher({"source_ids": np.ones((1, 2), "int32"), "decoder_ids": np.ones((1, 2), "int32")})
    with open(tmp_path / BACKBONE_CONFIG, "w") as f:
        json.dump(keras.saving.serialize_keras_object(teacher), f)
    teacher.save_weights(str(tmp_path / BACKBONE_WEIGHTS))
    script = f"""
import sys, types
import numpy as np
from tfkd.methods.two_stage.teacher import load_teacher_pretrain_backbone
assert "tfkd.models.transformer" not in sys.modules
inputs = {{"source_ids": np.ones((1, 2), "int32"), "decoder_ids": np.ones((1, 2), "int32")}}
context = types.SimpleNamespace(
    runner=types.SimpleNamespace(stage_dir=lambda name: {str(tmp_path)!r}),
    task=types.SimpleNamespace(student_inputs=lambda tokenizers: inputs),
    tokenizers=lambda: None,
)
print(load_teacher_pretrain_backbone(context).count_params())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) == teacher.count_params()
