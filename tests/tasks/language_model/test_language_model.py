"""The language_model task: blocks, word counts, the byte-level BPE, its loss terms and
perplexity against NumPy, and an export served without tfkd that equals the run's scores and
continuations."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from helpers import REPO, FakeContext, serve_only, tiny_gpt2

from tfkd.data import tokenize_to_ragged
from tfkd.spec import ExportSpec, TrainSpec
from tfkd.tasks.language_model import LanguageModelData, LanguageModelDecode, LanguageModelTask
from tfkd.tasks.language_model.data import NO_LABEL, blocks, read_split, wikitext_detokenize
from tfkd.tasks.language_model.export import TextLM, make_sampler
from tfkd.tasks.language_model.vocab import END_OF_TEXT, learn_byte_level_bpe, load_tokenizers

WIKITEXT = os.path.join(os.environ["TFKD_DATA_DIR"], "wikitext2")


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_blocks_predict_every_token_after_the_first_exactly_once():
    stream = np.arange(1, 12, dtype=np.int32)  # 11 tokens: 10 predicted
    inputs, labels = blocks(stream, 4)
    assert inputs.shape == labels.shape == (3, 4)
    np.testing.assert_array_equal(labels[labels != NO_LABEL], stream[1:])
    for i in range(3):
        for j in range(4):
            if labels[i, j] != NO_LABEL:  # input t of a block is the token before label t
                assert inputs[i, j] == stream[i * 4 + j] and labels[i, j] == stream[i * 4 + j + 1]
    assert list(labels[2]) == [10, 11, NO_LABEL, NO_LABEL] and list(inputs[2, 2:]) == [0, 0]


def test_word_counts_are_the_published_wikitext2_sizes():
    data = LanguageModelData(dir=WIKITEXT)
    # words + one end of line per line (pytorch word_language_model's <eos>): 217,646 / 245,569
    assert read_split(data, "valid").words == 217646
    assert read_split(data, "test").words == 245569


@pytest.mark.parametrize(
    ("published", "text"),
    [
        ("= = Gameplay = =", "== Gameplay =="),
        ("a guest @-@ starring role in 1 @,@ 000 and 3 @.@ 5 films .", "a guest-starring role in 1,000 and 3.5 films."),
        (
            'as " Craig " in " Teddy \'s Story " ( 2004 ) ; then : more , less !',
            'as "Craig" in "Teddy\'s Story" (2004); then: more, less!',
        ),
        ("the players ' guild [ sic ] ?", "the players' guild [sic]?"),
    ],
)
def test_wikitext_lines_detokenize_as_gpt2_evaluated_them(published, text):
    assert wikitext_detokenize(published) == text


def test_detokenize_wikitext_feeds_plain_text_and_keeps_the_published_word_count():
    data = LanguageModelData(dir=WIKITEXT, valid_limit=200)
    published = read_split(data, "valid")
    plain = read_split(LanguageModelData(dir=WIKITEXT, valid_limit=200, detokenize="wikitext"), "valid")
    assert plain.lines == [wikitext_detokenize(line) for line in published.lines] != published.lines
    assert plain.words == published.words
    assert not any(" @-@ " in line or " , " in line for line in plain.lines)
    # and the setting keys the data (a run made before it stays done without it)
    task = LanguageModelTask()
    assert "detokenize" not in task.data_key(types.SimpleNamespace(data=data), ["valid"])
    detokenizing = types.SimpleNamespace(data=LanguageModelData(dir=WIKITEXT, detokenize="wikitext"))
    assert task.data_key(detokenizing, ["valid"])["detokenize"] == "wikitext"


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bpe")
    with open(os.path.join(WIKITEXT, "train.txt"), encoding="utf-8") as f:
        lines = [next(f).strip() for _ in range(3000)]
    size = learn_byte_level_bpe(lines, 1000, 2, str(directory))
    assert size == 1000  # exactly the size asked for
    return directory


def test_keras_hub_applies_the_learned_bpe_as_the_learner_does_and_detokenizes_exactly(bpe_dir):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokenizer = load_tokenizers(str(bpe_dir)).text
    assert tokenizer.vocabulary_size() == 1000 and tokenizer.token_to_id(END_OF_TEXT) == 0
    learner = Tokenizer(models.BPE.from_file(str(bpe_dir / "vocab.json"), str(bpe_dir / "merges.txt")))
    learner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    learner.decoder = decoders.ByteLevel()
    with open(os.path.join(WIKITEXT, "valid.txt"), encoding="utf-8") as f:
        lines = [line.strip() for line in f][:400]
    lines += ["Zoë's café — naïve “quotes” 1 @,@ 000 ; tabs\tand  double  spaces", "日本語のテキスト"]
    ours = tokenize_to_ragged(tokenizer, lines).to_list()
    assert ours == [e.ids for e in learner.encode_batch(lines)]
    back = tf.function(tokenizer.detokenize)(tf.ragged.constant(ours)).numpy()
    assert [b.decode("utf-8") for b in back] == lines


def test_supervised_terms_match_numpy_over_the_positions_with_a_label():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7)).astype("float32")
    labels = np.array([[3, 1, NO_LABEL], [0, 6, 2]], np.int32)
    inputs = {"token_ids": np.ones([2, 3], np.int32), "padding_mask": labels != NO_LABEL}
    _, terms, tokens = LanguageModelTask().supervised_terms(lambda x, training: logits, (inputs, labels), True, 0.1)
    log_probs = log_softmax(logits.astype("float64"))
    kept = labels != NO_LABEL
    nll = -np.take_along_axis(log_probs, np.maximum(labels, 0)[..., None], -1)[..., 0]
    smoothed = 0.9 * nll - 0.1 * log_probs.mean(-1)
    np.testing.assert_allclose(float(terms["nll"].total), nll[kept].sum(), rtol=1e-5)
    np.testing.assert_allclose(float(terms["xe"].total), smoothed[kept].sum(), rtol=1e-5)
    assert float(terms["nll"].count) == float(tokens) == 5


def tiny_model(vocabulary_size, seed=0):
    return tiny_gpt2(vocabulary_size, seed)


@pytest.fixture
def context(tmp_path, bpe_dir):
    (tmp_path / "train.txt").write_text(" = Valkyria = \n\n The game began in 2010 .\n")
    (tmp_path / "valid.txt").write_text(
        " = Robert Boulter = \n\n Robert Boulter is an English actor .\n He had a guest role in 2000 , then another .\n"
    )
    spec = types.SimpleNamespace(
        data=LanguageModelData(dir=str(tmp_path), block_size=8, batch_size=2),
        decode=LanguageModelDecode(max_new_tokens=6),
        train=TrainSpec(seed=3),
        export=ExportSpec(),
    )
    return FakeContext(spec, load_tokenizers(str(bpe_dir)))


def test_perplexity_per_word_and_per_token_by_hand(context, tmp_path):
    task = LanguageModelTask()
    tokenizer = context.tokenizers().text
    model = tiny_model(tokenizer.vocabulary_size())
    result = task.evaluate(context, model, "valid", str(tmp_path))
    # by hand: <eot> line <eot> line <eot> ..., windows of 8 inputs, each token predicted once
    lines = [
        "= Robert Boulter =",
        "",
        "Robert Boulter is an English actor .",
        "He had a guest role in 2000 , then another .",
    ]
    end = tokenizer.token_to_id(END_OF_TEXT)
    stream = [end]
    for line in lines:
        stream += tokenize_to_ragged(tokenizer, [line]).to_list()[0] + [end]
    total = 0.0
    for start in range(0, len(stream) - 1, 8):
        window = np.array(stream[start : start + 9])
        logits = model({"token_ids": window[None, :-1], "padding_mask": np.ones([1, len(window) - 1], bool)})
        log_probs = log_softmax(np.asarray(logits, np.float64)[0])
        total -= log_probs[np.arange(len(window) - 1), window[1:]].sum()
    words = sum(len(line.split()) for line in lines) + len(lines)
    assert result["tokens"] == len(stream) - 1 and result["words"] == words == 26
    np.testing.assert_allclose(result["word_perplexity"], np.exp(total / words), rtol=1e-3)
    np.testing.assert_allclose(result["token_perplexity"], np.exp(total / (len(stream) - 1)), rtol=1e-3)
    assert result["score"] == result["word_perplexity"] and result["metric"] == "perplexity"


def test_export_served_without_tfkd_returns_the_run_log_probs_and_continuation(context, tmp_path):
    tokenizer = context.tokenizers().text
    model = tiny_model(tokenizer.vocabulary_size(), seed=1)
    text_lm = TextLM(model, tokenizer, make_sampler(context.spec.decode), max_new_tokens=6)
    texts = ["The game began in", "Robert is an English actor", "", "日本"]
    in_process = {k: v.numpy() for k, v in text_lm.score_and_generate(tf.constant(texts)).items()}
    # the log-probabilities by hand: log p(token_t | <eot> token_<t)
    end = tokenizer.token_to_id(END_OF_TEXT)
    for row, text in enumerate(texts):
        ids = tokenize_to_ragged(tokenizer, [text]).to_list()[0]
        assert in_process["lengths"][row] == len(ids)
        if ids:
            inputs = np.array([[end] + ids[:-1]])
            log_probs = log_softmax(
                np.asarray(model({"token_ids": inputs, "padding_mask": inputs >= 0}), np.float64)[0]
            )
            np.testing.assert_allclose(
                in_process["log_probs"][row, : len(ids)], log_probs[np.arange(len(ids)), ids], atol=1e-5
            )

    # greedy continuation by hand: argmax of the full forward pass, token after token
    def continued(text):
        ids, generated = [end] + tokenize_to_ragged(tokenizer, [text]).to_list()[0], []
        for _ in range(6):
            logits = model({"token_ids": np.array([ids]), "padding_mask": np.ones([1, len(ids)], bool)})
            next_id = int(np.argmax(np.asarray(logits)[0, -1]))
            if next_id == end:
                break
            ids.append(next_id)
            generated.append(next_id)
        text = tf.function(tokenizer.detokenize)(tf.constant([generated], tf.int32)).numpy()[0] if generated else b""
        return text.decode("utf-8", errors="replace").encode("utf-8")

    assert in_process["continuation"][0] == continued(texts[0])
    # an empty text scores nothing (no token, log-probability 0) and is continued from
    # <|endoftext|> alone, as a text's first token is predicted
    assert texts[2] == "" and in_process["lengths"][2] == 0 and in_process["total_log_prob"][2] == 0
    assert in_process["continuation"][2] == continued("")
    path = tmp_path / "export"
    LanguageModelTask().export(context, model, str(path))  # a TextLM like text_lm
    info = json.loads((path / "assets.extra" / "tfkd.json").read_text())
    assert info == {
        "task": "language_model",
        "input": "text",
        "output": "continuation",
        "batch_size": 16,
        "decode": context.spec.decode.model_dump(mode="json"),
        "max_input_chars": context.spec.export.max_input_chars,
    }
    served = serve_only(path, texts, tmp_path, input_name="text")
    assert served["loaded"] == []
    np.testing.assert_allclose(served["log_probs"], in_process["log_probs"], atol=1e-5)
    np.testing.assert_allclose(served["total_log_prob"], in_process["total_log_prob"], atol=1e-4)
    assert served["continuation"] == [c.decode("utf-8") for c in in_process["continuation"]]
    # more lines than decode.batch_size (16): two calls, the first's narrower per-token outputs
    # padded with zeros to the second's width, as one call pads a short text to the longest
    many = serve_only(path, [texts[3]] * 16 + texts, tmp_path, input_name="text")
    log_probs = np.array(many["log_probs"])
    assert log_probs.shape == (20, in_process["log_probs"].shape[1])
    np.testing.assert_allclose(log_probs[16:], in_process["log_probs"], atol=1e-5)
    np.testing.assert_allclose(log_probs[:16], np.repeat(in_process["log_probs"][3:4], 16, 0), atol=1e-5)
    assert many["continuation"][16:] == served["continuation"]
    # TF Serving's session-based loader restores every variable and table
    # (saved_model_cli run through the tools/ wrapper that registers TF Text's ops)
    wrapper = os.path.join(REPO, "tools", "saved_model_cli_text.py")
    run = subprocess.run(
        [
            sys.executable,
            wrapper,
            "run",
            "--dir",
            str(path),
            "--tag_set",
            "serve",
            "--signature_def",
            "score",
            "--input_exprs",
            'text=["The game began in"]',
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Result for output key log_probs:" in run.stdout


def test_the_paired_test_bootstraps_token_perplexity_over_every_seeds_blocks(tmp_path):
    from tfkd.tasks.language_model import LanguageModelTask

    rng = np.random.default_rng(0)
    folders = []
    for name, scale in (("b", 3.0), ("c", 2.5)):
        folder = tmp_path / name
        folder.mkdir()
        tokens = rng.integers(20, 40, size=30).astype("float64")
        np.save(folder / "valid.blocks.npy", np.stack([tokens * scale + rng.normal(0, 1, 30), tokens], 1))
        folders.append(folder)
    result = LanguageModelTask().paired_test(None, "valid", [folders[0]], [folders[1]])["token perplexity"]
    blocks = [np.load(f / "valid.blocks.npy") for f in folders]
    assert result["baseline"] == pytest.approx(np.exp(blocks[0][:, 0].sum() / blocks[0][:, 1].sum()), rel=1e-4)
    assert result["difference"] < 0 and result["significant"] and result["ci_high"] < 0  # lower is better
