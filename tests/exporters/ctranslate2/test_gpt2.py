"""``export.format: ctranslate2`` of a GPT-2 language model
(tfkd/exporters/ctranslate2/gpt2.py): CTranslate2's token log-probabilities against
the Keras student's, and greedy continuations through ``tfkd.load`` equal to the SavedModel
graph's (TextLM), empty and non-Latin prompts among them."""

import os
import types

import numpy as np
import pytest
import tensorflow as tf
from helpers import FakeContext, log_softmax, tiny_gpt2

ctranslate2 = pytest.importorskip("ctranslate2")

from tfkd.data import tokenize_to_ragged  # noqa: E402
from tfkd.exporters.ctranslate2 import CTranslate2Exporter  # noqa: E402
from tfkd.spec import ExportSpec  # noqa: E402
from tfkd.tasks.language_model import LanguageModelDecode  # noqa: E402
from tfkd.tasks.language_model.export import TextLM, make_sampler  # noqa: E402
from tfkd.tasks.language_model.vocab import END_OF_TEXT, learn_byte_level_bpe, load_tokenizers  # noqa: E402

PROMPTS = ["The game began in", "Robert is an English actor", "", "日本の", "= = Reception = ="]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_dir):
    """A tiny GPT-2 student on a BPE learned from WikiText-2, exported by the exporter."""
    tmp = tmp_path_factory.mktemp("lm")
    vocab_dir = tmp / "vocab"
    vocab_dir.mkdir()
    with open(os.path.join(data_dir, "wikitext2", "train.txt"), encoding="utf-8") as f:
        lines = [next(f).strip() for _ in range(2000)]
    learn_byte_level_bpe(lines, 600, 2, str(vocab_dir))
    student = tiny_gpt2(600, seed=2, num_layers=2, max_sequence_length=40)
    spec = types.SimpleNamespace(
        task="language_model",
        decode=LanguageModelDecode(max_new_tokens=6),
        export=ExportSpec(format="ctranslate2"),
    )
    context = FakeContext(spec, load_tokenizers(str(vocab_dir)))
    context.runner = types.SimpleNamespace(stage_dir=lambda name: str(vocab_dir))
    path = str(tmp / "1.ctranslate2")
    CTranslate2Exporter().write(context, student, path)
    return student, context, path


def test_ctranslate2_scores_every_token_as_the_keras_student(exported):
    student, context, path = exported
    tokenizer = context.tokenizers().text
    generator = ctranslate2.Generator(path, device="cpu")
    end = tokenizer.token_to_id(END_OF_TEXT)
    for text in PROMPTS[:2] + PROMPTS[3:]:
        ids = [end, *tokenize_to_ragged(tokenizer, [text]).to_list()[0]]
        (result,) = generator.score_batch([[tokenizer.id_to_token(i) for i in ids]])
        logits = student({"token_ids": np.array([ids[:-1]]), "padding_mask": np.ones([1, len(ids) - 1], bool)})
        expected = log_softmax(np.asarray(logits, np.float64)[0])[np.arange(len(ids) - 1), ids[1:]]
        np.testing.assert_allclose(result.log_probs, expected, atol=2e-4)


def test_greedy_continuations_through_tfkd_load_equal_the_saved_model_graph(exported):
    import tfkd

    student, context, path = exported
    text_lm = TextLM(student, context.tokenizers().text, make_sampler(context.spec.decode), max_new_tokens=6)
    expected = [t.decode("utf-8") for t in text_lm.generate(tf.constant(PROMPTS))["continuation"].numpy()]
    model = tfkd.load(path)
    assert model.task == "language_model"
    assert model(PROMPTS) == expected
    assert any(expected)  # the comparison means something
