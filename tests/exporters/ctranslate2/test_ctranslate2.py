"""``export.format: ctranslate2`` (tfkd/exporters/ctranslate2/): the Keras weights mapped into
CTranslate2's Transformer (its token log-probabilities against the Keras student's, tied and
untied output layers), a real tiny run exported and served by ``tfkd translate`` / ``tfkd.load``
with the SavedModel's translations, int8 quantization, and one-line refusals."""

import json
import os
import sys
import types

import keras_hub
import numpy as np
import pytest
from helpers import log_softmax, tfkd, tiny_transformer, write_spec

from tfkd.errors import StageError

ctranslate2 = pytest.importorskip("ctranslate2")

from tfkd.exporters.ctranslate2 import CTranslate2Exporter  # noqa: E402
from tfkd.exporters.ctranslate2.transformer import convert, transformer_spec  # noqa: E402

SOURCE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "ein", "mann", "hund", "##e", "."]
TARGET = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "man", "dog", "##s", ".", "runs"]


def tokenizer(vocabulary):
    return keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocabulary, oov_token="[UNK]")


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_ctranslate2_scores_every_target_token_as_the_keras_student(tmp_path, tie_embeddings):
    student = tiny_transformer(len(SOURCE), len(TARGET), seed=5, max_length=16, tie_embeddings=tie_embeddings)
    convert(transformer_spec(student, tokenizer(SOURCE), tokenizer(TARGET)), str(tmp_path / "ct2"), "float32")
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu")
    pairs = [([5, 6, 9], [5, 6, 10, 9]), ([7, 8], [7, 8]), ([5, 7, 8, 6, 9, 5], [5, 7, 10])]
    results = translator.score_batch(
        [[SOURCE[i] for i in s] for s, _ in pairs], [[TARGET[i] for i in t] for _, t in pairs]
    )
    for (source, target), result in zip(pairs, results):
        # the Keras student: [CLS] target -> target [SEP], every log-probability
        decoder = np.array([[2, *target]], np.int32)
        logits = student({"source_ids": np.array([source], np.int32), "decoder_ids": decoder})
        expected = log_softmax(np.asarray(logits, np.float64)[0])[np.arange(len(target) + 1), [*target, 3]]
        np.testing.assert_allclose(result.log_probs, expected, atol=2e-4)


def test_a_student_ctranslate2_does_not_hold_is_refused_in_one_line(tmp_path):
    import user_layers  # noqa: F401  (registers gated_residual_encoder)

    from tfkd.models.lstm import LSTMSeq2Seq

    with pytest.raises(StageError, match=r"a LSTMSeq2Seq student; CTranslate2 holds the Transformer translation"):
        CTranslate2Exporter().write(types.SimpleNamespace(spec=None), LSTMSeq2Seq(10, 11), str(tmp_path / "x"))
    blocks = tiny_transformer(len(SOURCE), len(TARGET), seed=1, encoder_layer={"kind": "gated_residual_encoder"})
    with pytest.raises(StageError, match=r"GatedResidualEncoder blocks are not keras-hub's TransformerEncoder"):
        transformer_spec(blocks, tokenizer(SOURCE), tokenizer(TARGET))


def test_mask_predict_decoding_is_refused_in_one_line(tmp_path):
    context = types.SimpleNamespace(spec=types.SimpleNamespace(decode=types.SimpleNamespace(algorithm="mask_predict")))
    student = tiny_transformer(len(SOURCE), len(TARGET), seed=1)
    with pytest.raises(StageError, match="decode.algorithm 'mask_predict': CTranslate2 decodes autoregressively"):
        CTranslate2Exporter().write(context, student, str(tmp_path / "x"))


def test_decode_precision_is_refused_for_ctranslate2_which_has_export_quantization(tmp_path):
    decode = types.SimpleNamespace(algorithm="beam", precision="bfloat16")
    context = types.SimpleNamespace(spec=types.SimpleNamespace(decode=decode))
    student = tiny_transformer(len(SOURCE), len(TARGET), seed=1)
    with pytest.raises(
        StageError,
        match="decode.precision bfloat16 applies to TensorFlow's graph; .* set export.quantization: bfloat16",
    ):
        CTranslate2Exporter().write(context, student, str(tmp_path / "x"))


def test_without_ctranslate2_the_export_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 raises ImportError
    with pytest.raises(StageError, match=r'needs the ctranslate2 package: pip install -e "\.\[ctranslate2\]"'):
        CTranslate2Exporter().write(None, None, str(tmp_path / "x"))


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 2), (4, 4), (64, 4)])
def test_ctranslate2_threads_default_to_its_4_but_no_more_than_the_cpus_and_1_for_int8(monkeypatch, cpus, threads):
    # CTranslate2's own default is 4 threads; 4 on 2 CPUs spin against each other
    from tfkd.exporters.ctranslate2.folder import default_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert default_threads() == default_threads("float32") == threads
    # int8 weights: one thread (two waited on each other at batch 1)
    assert default_threads("int8") == default_threads("int8_float32") == 1


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    """A tiny real run (the test spec's, with keras-hub blocks) trained and exported both ways."""
    tmp = tmp_path_factory.mktemp("ct2")
    spec = write_spec(tmp, "tiny", steps=40, every=20)
    text = open(spec).read().replace("  encoder_layer: {kind: gated_residual_encoder}\n", "")
    open(spec, "w").write(text)
    out = tfkd("run", spec, "--set", "stages=[vocab,train,export]", env_extra={"TFKD_DATA_DIR": data_dir}, cwd=tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp / "runs" / "tiny"
    # versions are numbered across formats: the SavedModel is 1
    for args in (["--format", "ctranslate2"], ["--format", "ctranslate2", "--quantization", "int8"]):
        out = tfkd("export", str(run), *args, "--version", "auto", cwd=tmp)
        assert out.returncode == 0, out.stderr[-3000:]
    return run


def lines_to_translate(data_dir):
    with open(os.path.join(data_dir, "multi30k_deen", "valid.de")) as f:
        valid = [next(f).strip() for _ in range(40)]
    odd = ["", "   ", " ".join(valid[:12]), "Ein Mann\u00a0fährt – «Fahrrad» …", "e\u0301\u0301 مرحبا \u200f"]
    return valid + odd


@pytest.mark.slow
def test_tfkd_translate_serves_the_ctranslate2_export_as_the_saved_model(run_dir, data_dir, tmp_path):
    lines = lines_to_translate(data_dir)
    (tmp_path / "in.de").write_text("\n".join(lines) + "\n")
    outputs, warnings = {}, {}
    for name, model in (
        ("saved_model", run_dir / "export" / "tiny" / "1"),
        ("ctranslate2", run_dir / "export" / "tiny" / "2.ctranslate2"),
        ("run", run_dir),
    ):
        out = tfkd("translate", str(model), "-i", str(tmp_path / "in.de"))
        assert out.returncode == 0, out.stderr[-3000:]
        outputs[name] = out.stdout.splitlines()
        warnings[name] = [line.split(" W ", 1)[1] for line in out.stderr.splitlines() if " tfkd W " in line]
    assert len(outputs["run"]) == len(lines) and outputs["run"][40:42] == ["", ""]
    assert outputs["ctranslate2"] == outputs["saved_model"] == outputs["run"]
    # the long lines (input 43 holds twelve sentences) are cut alike, and each path says so once, in the same words
    assert warnings["ctranslate2"] == warnings["saved_model"] == warnings["run"]
    assert len(warnings["run"]) == 1 and ", 43 (the longest has" in warnings["run"][0], warnings
    info = json.loads((run_dir / "export" / "tiny" / "2.ctranslate2" / "tfkd.json").read_text())
    assert info["format"] == "ctranslate2" and info["quantization"] == "float32"


def test_gnmt_best_ranks_ctranslate2_hypotheses_by_gnmt_s_penalty_on_their_log_probabilities():
    from tfkd.exporters.ctranslate2.translator import gnmt_best

    # log-probabilities -2.0 (2 tokens with the EOS) and -4.5 (10): CTranslate2's length ** 0.6
    # puts the long one first, GNMT's ((5 + length) / 6) ** 0.6 the short one
    short, long = ["a", "[SEP]"], ["a"] * 9 + ["[SEP]"]
    log_probs, lengths = np.array([-4.5, -2.0]), np.array([10.0, 2.0])
    ctranslate2_scores = log_probs / lengths**0.6
    assert ctranslate2_scores[0] > ctranslate2_scores[1]
    hypothesis, score = gnmt_best([long, short], ctranslate2_scores.tolist(), 0.6, 0.6)
    assert hypothesis == short and score == pytest.approx(-2.0 / (7 / 6) ** 0.6, rel=1e-12)
    # a run without a length penalty: CTranslate2 decoded with a small one, undone exactly
    hypothesis, score = gnmt_best([long, short], (log_probs / lengths**1e-3).tolist(), 1e-3, 0.0)
    assert hypothesis == short and score == pytest.approx(-2.0, rel=1e-12)


@pytest.mark.parametrize("length_penalty", [0.0, 1.5])
def test_ctranslate2_ranks_finished_hypotheses_as_the_run_s_beam_search(run_dir, data_dir, tmp_path, length_penalty):
    """A random student with peaked distributions and a likelier end token (its hypotheses end
    at many lengths), beam 4: with a length penalty CTranslate2's own ``length ** alpha`` ranks some
    sentences' finished hypotheses otherwise than GNMT's; the export translates and scores each
    as tfkd's beam search does."""
    from tfkd.exporters.ctranslate2.translator import CTranslate2Translator, gnmt_best
    from tfkd.pipeline import open_run

    _, _, context = open_run(run_dir)
    spec = context.spec
    decode = spec.decode.model_copy(update={"beam_size": 4, "length_penalty": length_penalty})
    context = context.with_spec(spec.model_copy(update={"decode": decode}))
    tokenizers = context.tokenizers()
    sizes = [t.vocabulary_size() for t in (tokenizers.source, tokenizers.target)]
    student = tiny_transformer(*sizes, seed=5, max_length=context.spec.data.max_tokens)
    end = tokenizers.target.token_to_id("[SEP]")
    kernel, bias = student.output_projection.kernel, student.output_projection.bias
    kernel.assign(16.0 * kernel.numpy())
    bias.assign(bias.numpy() + 2.0 * (np.arange(sizes[1]) == end))
    lines = lines_to_translate(data_dir)
    translations, scores = context.task.translator(context, student).translate_all(lines)
    CTranslate2Exporter().write(context, student, str(tmp_path / "ct2"))
    exported = CTranslate2Translator(str(tmp_path / "ct2"))
    ct2_translations, ct2_scores = exported.translate_all(lines)
    assert ct2_translations == translations
    np.testing.assert_allclose(ct2_scores, scores, rtol=1e-4, atol=1e-4)
    lengths = {len(t.split()) for t in translations}
    assert len(lengths) > 3, lengths  # hypotheses of many lengths compete
    if length_penalty:  # CTranslate2's own ranking of the same hypotheses: the test can fail
        options = dict(beam_size=4, length_penalty=length_penalty, min_decoding_length=0, max_decoding_length=30)
        ids = exported._prepare(lines)[0].to_list()
        tokens = [[exported.source_vocabulary[i] for i in row[: exported.max_tokens]] or ["[UNK]"] for row in ids]
        own = exported.translator.translate_batch(tokens, **options)
        ours = exported.translator.translate_batch(
            tokens, **options, num_hypotheses=4, return_scores=True, return_end_token=True
        )
        ranked = [gnmt_best(r.hypotheses, r.scores, length_penalty, length_penalty)[0] for r in ours]
        assert sum(o.hypotheses[0] != [t for t in r if t != "[SEP]"] for o, r in zip(own, ranked)) > 0


def test_a_model_folder_serves_its_newest_version_in_any_format(run_dir):
    # the run's model folder holds the SavedModel 1/ and the CTranslate2 2.ctranslate2/ and
    # 3.ctranslate2/ (int8): as TF Serving takes a base path's newest version, tfkd does
    from tfkd.exporters.ctranslate2 import CTranslate2Exporter
    from tfkd.exporters.saved_model import SavedModelExporter
    from tfkd.serving import find_export

    model = run_dir / "export" / "tiny"
    assert find_export(str(model)) == (CTranslate2Exporter, str(model / "3.ctranslate2"))
    assert find_export(str(model / "1")) == (SavedModelExporter, str(model / "1"))
    assert find_export(str(model / "2.ctranslate2")) == (CTranslate2Exporter, str(model / "2.ctranslate2"))


def test_a_student_that_ends_at_once_gives_empty_translations_in_the_run_and_its_export(run_dir, data_dir, tmp_path):
    """A student whose first token is always [SEP]: tfkd's decoders end every translation empty;
    the CTranslate2 export must too (CTranslate2's own minimum is one token)."""
    from tfkd.exporters.ctranslate2.translator import CTranslate2Translator
    from tfkd.pipeline import open_run

    _, _, context = open_run(run_dir)
    tokenizers = context.tokenizers()
    sizes = [t.vocabulary_size() for t in (tokenizers.source, tokenizers.target)]
    student = tiny_transformer(*sizes, seed=3, max_length=context.spec.data.max_tokens)
    bias = student.output_projection.bias
    bias.assign(bias.numpy() + 1e4 * (np.arange(sizes[1]) == tokenizers.target.token_to_id("[SEP]")))
    lines = lines_to_translate(data_dir)[:6]
    assert context.task.predictor(context, student)(lines) == [""] * 6
    CTranslate2Exporter().write(context, student, str(tmp_path / "ct2"))
    assert CTranslate2Translator(str(tmp_path / "ct2")).translate_all(lines)[0] == [""] * 6


@pytest.mark.slow
def test_int8_export_is_smaller_and_serves_through_tfkd_load(run_dir, data_dir):
    import tfkd

    float32 = run_dir / "export" / "tiny" / "2.ctranslate2"
    int8 = run_dir / "export" / "tiny" / "3.ctranslate2"
    assert json.loads((int8 / "tfkd.json").read_text())["quantization"] == "int8"
    assert (int8 / "model.bin").stat().st_size < 0.6 * (float32 / "model.bin").stat().st_size
    lines = lines_to_translate(data_dir)
    translations = tfkd.load(str(int8))(lines)
    reference = tfkd.load(str(float32))(lines)
    assert len(translations) == len(lines) and translations[40:42] == ["", ""]
    # int8 weights move some tokens of this barely trained model, not most
    same = sum(a == b for a, b in zip(translations, reference))
    assert same >= len(lines) // 2, (same, len(lines))
