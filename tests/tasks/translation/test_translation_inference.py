"""The Translator (tfkd/tasks/translation/inference.py): an empty or white-space-only source
translates to the empty string, scored 0, with every decoder, one-best and n-best, in process
and through a SavedModel; the other sentences of the batch translate as they do alone. The
lines an XLA-compiled decoder's export warms TF Serving up with fill every source bucket."""

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_transformer

from tfkd.tasks.translation import TranslationDecode
from tfkd.tasks.translation.inference import Translator, nbest_in_batches, translate_in_batches

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d"]
EMPTY = ["", " ", "\t \u3000 "]  # nothing, a space, tabs and an ideographic space


@pytest.fixture(scope="module")
def tokenizer():
    return keras_hub.tokenizers.WordPieceTokenizer(vocabulary=VOCABULARY, oov_token="[UNK]")


@pytest.fixture(scope="module")
def model():
    student = tiny_transformer(len(VOCABULARY), len(VOCABULARY), seed=3, max_length=16)
    # favour word tokens over [SEP] so that a non-empty source gets a non-empty translation
    kernel, bias = student.output_projection.get_weights()
    bias[5:] += 3.0
    student.output_projection.set_weights([kernel, bias])
    return student


def translator(model, tokenizer, algorithm, **options):
    decode = TranslationDecode(algorithm=algorithm, max_length_a=0.0, max_length_b=6, **options)
    return Translator(model, tokenizer, tokenizer, decode, max_tokens=16)


@pytest.mark.parametrize("algorithm", ["greedy", "beam"])
def test_an_empty_source_translates_to_nothing_and_the_others_as_alone(model, tokenizer, algorithm):
    t = translator(model, tokenizer, algorithm)
    words = ["a b c", "d a"]
    alone = t.translate(tf.constant(words))
    assert all(alone["translations"].numpy())  # the check below means something
    mixed = t.translate(tf.constant([EMPTY[0], words[0], EMPTY[1], words[1], EMPTY[2]]))
    texts = [x.decode() for x in mixed["translations"].numpy()]
    scores = mixed["scores"].numpy()
    assert texts[0] == texts[2] == texts[4] == ""
    assert scores[0] == scores[2] == scores[4] == 0.0
    np.testing.assert_array_equal(mixed["translations"].numpy()[[1, 3]], alone["translations"].numpy())
    np.testing.assert_allclose(scores[[1, 3]], alone["scores"].numpy(), rtol=1e-5)
    # the Python batching the run and tfkd translate use
    outputs, batch_scores = translate_in_batches(t.translate, ["", "a b c", "  "], batch_size=2)
    assert outputs[0] == outputs[2] == "" and outputs[1] and batch_scores[0] == batch_scores[2] == 0.0


def test_nbest_of_an_empty_source_is_one_empty_hypothesis(model, tokenizer):
    t = translator(model, tokenizer, "beam", beam_size=3)
    ranked = nbest_in_batches(t.nbest_function(3), ["", "a b", " "], batch_size=3)
    assert ranked[0] == ranked[2] == [("", 0.0)]
    assert len(ranked[1]) == 3 and all(text for text, _ in ranked[1])


class LengthTwoModel:
    """A fake Mask-Predict student: length 2 for every source, logits from a fixed table
    favouring the words "a".."d"."""

    mask_id = VOCABULARY.index("[MASK]")

    def encode(self, source_ids, training=False):
        return tf.cast(source_ids[:, :, tf.newaxis], tf.float32), tf.not_equal(source_ids, 0)

    def length_logits(self, hidden, padding_mask):
        return tf.tile(tf.constant([[0.0, 0.0, 5.0, 1.0, 0.0, 0.0, 0.0]]), [tf.shape(hidden)[0], 1])

    def decode(self, decoder_ids, hidden, padding_mask, training=False):
        table = tf.constant([[0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 2.0, 1.0, 0.5]])
        return tf.tile(table[tf.newaxis], [tf.shape(decoder_ids)[0], tf.shape(decoder_ids)[1], 1])


def test_mask_predict_gives_an_empty_source_nothing(tokenizer):
    t = translator(LengthTwoModel(), tokenizer, "mask_predict", length_candidates=2, iterations=2)
    result = t.translate(tf.constant(["", "a b", "\t"]))
    assert [x.decode() for x in result["translations"].numpy()] == ["", "a a", ""]
    assert result["scores"].numpy()[[0, 2]].tolist() == [0.0, 0.0]


def test_an_export_translates_an_empty_source_to_nothing(model, tokenizer, tmp_path):
    from tfkd.exporters.text_saved_model import write_text_saved_model

    t = translator(model, tokenizer, "beam", beam_size=2)
    path = str(tmp_path / "export")
    write_text_saved_model(
        path,
        {"serving_default": t._translate},
        {"task": "translation", "input": "source", "output": "translations", "batch_size": 8},
        tokenizers=(tokenizer, tokenizer),
    )
    serve = tf.saved_model.load(path).signatures["serving_default"]
    result = serve(tf.constant(["", "a b", "   "]))
    texts = [x.decode() for x in result["translations"].numpy()]
    assert texts[0] == texts[2] == "" and texts[1]
    assert result["scores"].numpy()[[0, 2]].tolist() == [0.0, 0.0]


def _sentencepiece(tmp_path, data_dir):
    from tfkd import data as data_lib
    from tfkd.spec import TokenizerSpec

    with open(f"{data_dir}/multi30k_deen/train.de", encoding="utf-8") as f:
        sentences = [next(f).rstrip("\n") for _ in range(2000)]
    path = str(tmp_path / "source.vocab")
    data_lib.learn_vocabulary(sentences, TokenizerSpec(kind="sentencepiece", vocab_size=800), path)
    return data_lib.make_tokenizer(path, kind="sentencepiece")


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
def test_bucket_lines_give_one_line_to_every_width_an_xla_decoder_compiles(model, tokenizer, tmp_path, data_dir, kind):
    """The lines an export with ``decode.jit_compile`` hands TF Serving to warm up: one per
    multiple of ``bucket_width`` up to ``max_tokens`` + 1, the width the decoder sees."""
    source = tokenizer if kind == "wordpiece" else _sentencepiece(tmp_path, data_dir)
    decode = TranslationDecode(algorithm="greedy", jit_compile=True)
    t = Translator(model, source, tokenizer, decode, max_tokens=13, bucket_width=4)
    lines = t.bucket_lines()
    width = tf.function(lambda line: tf.shape(t._source(line)[0])[1])  # as the export's graph pads it
    widths = [int(width(tf.constant([line]))) for line in lines]
    assert widths == [4, 8, 12, 16], (lines, widths)
    without = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=[*VOCABULARY[:5], "##a", "1"], oov_token="[UNK]")
    with pytest.raises(ValueError, match="no word of the source vocabulary is one token"):
        Translator(model, without, tokenizer, decode, max_tokens=13, bucket_width=4).bucket_lines()
