"""The byte-level BPE vocabulary of a language-model run (the generic vocab stage calls
:func:`build_vocabulary`): ``vocab.json`` and ``merges.txt`` in GPT-2's format.

A learned vocabulary is trained with the Hugging Face ``tokenizers`` BPE trainer (byte-level
pre-tokenization, GPT-2's split pattern; seconds on WikiText-2) and applied everywhere else with
keras-hub's ``GPT2Tokenizer``, in graph, so an export takes raw text. Both split text with
GPT-2's pattern and merge by rank, so they produce the same ids (tests compare them).
"""

import collections
import json
import logging
import os
import time

from tfkd.errors import StageError

log = logging.getLogger("tfkd")

# text: the keras-hub GPT2Tokenizer of the run
LanguageModelTokenizers = collections.namedtuple("LanguageModelTokenizers", ["text"])

END_OF_TEXT = "<|endoftext|>"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"


def learn_byte_level_bpe(lines, vocab_size, min_frequency, workdir):
    """Learn a byte-level BPE of exactly ``vocab_size`` entries (256 bytes, the merges and
    ``<|endoftext|>``; fewer only when the text has fewer pairs to merge) from ``lines``;
    writes ``vocab.json`` and ``merges.txt`` into ``workdir``; the size it reached."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer)
    tmp = os.path.join(workdir, "tmp-bpe")
    os.makedirs(tmp, exist_ok=True)
    tokenizer.model.save(tmp)
    for name in (VOCAB_FILE, MERGES_FILE):
        os.replace(os.path.join(tmp, name), os.path.join(workdir, name))
    os.rmdir(tmp)
    return tokenizer.get_vocab_size()


def build_vocabulary(task, context, workdir):
    spec = context.spec
    settings = spec.data.tokenizer
    if settings.kind == "teacher":
        import keras_hub

        from tfkd.teachers.checkpoints import from_checkpoint

        if spec.teacher is None or spec.teacher.checkpoint is None:
            raise StageError('vocab: data.tokenizer.kind is "teacher" but the spec has no teacher.checkpoint')
        tokenizer = from_checkpoint(keras_hub.tokenizers.GPT2Tokenizer.from_preset, spec.teacher.checkpoint)
        with open(os.path.join(workdir, VOCAB_FILE), "w", encoding="utf-8") as f:
            json.dump(tokenizer.vocabulary, f, ensure_ascii=False)
        with open(os.path.join(workdir, MERGES_FILE), "w", encoding="utf-8") as f:
            f.write("\n".join(tokenizer.merges) + "\n")
        size = tokenizer.vocabulary_size()
        log.info("vocab: the teacher's byte-level BPE, %d tokens", size)
        return {"vocabulary_size": size, "kind": "teacher"}
    text = task.text(context, "train")
    lines = list(text.lines) + list(_extra_lines(settings))
    start = time.time()
    size = learn_byte_level_bpe(lines, settings.vocab_size, settings.min_frequency, workdir)
    seconds = time.time() - start
    if size < settings.vocab_size:
        log.warning(
            "vocab: asked for %d tokens, the text supports %d (no pair left to merge at min_frequency %d)",
            settings.vocab_size,
            size,
            settings.min_frequency,
        )
    log.info("vocab: learned a %d-token byte-level BPE from %d lines in %.1fs", size, len(lines), seconds)
    return {"vocabulary_size": size, "kind": "bpe", "seconds": round(seconds, 2)}


def _extra_lines(settings):
    from tfkd.data import read_text_source

    for entry in settings.extra_text:
        yield from read_text_source(entry, None, "data.tokenizer.extra_text")[0]


def load_tokenizers(vocab_dir):
    """``LanguageModelTokenizers(text)``: keras-hub's GPT2Tokenizer on the vocab stage's files."""
    import keras_hub

    with open(os.path.join(vocab_dir, VOCAB_FILE), encoding="utf-8") as f:
        vocabulary = json.load(f)
    with open(os.path.join(vocab_dir, MERGES_FILE), encoding="utf-8") as f:
        merges = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#version")]
    return LanguageModelTokenizers(keras_hub.tokenizers.GPT2Tokenizer(vocabulary=vocabulary, merges=merges))
