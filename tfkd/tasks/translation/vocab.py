"""The source and target vocabularies of a translation run (the generic vocab stage calls
:func:`build_vocabulary`)."""

import collections
import json
import logging
import os
import shutil
import time

from tfkd import data as data_lib
from tfkd.errors import StageError

log = logging.getLogger("tfkd")

Tokenizers = collections.namedtuple("Tokenizers", ["source", "target"])


def build_vocabulary(task, context, workdir):
    spec = context.spec
    corpus = task.corpus(context, "train")
    sides = {
        "source": (spec.data.source_tokenizer, corpus.source),
        "target": (spec.data.target_tokenizer, corpus.target),
    }
    if spec.data.shared_vocab:
        sentences = corpus.source + corpus.target
        sides = {side: (tok, sentences) for side, (tok, _) in sides.items()}
    sizes, settings = {}, {}
    for side, (tokenizer_spec, sentences) in sides.items():
        path = os.path.join(workdir, f"{side}.vocab")
        settings[side] = {"lowercase": tokenizer_spec.lowercase, "strip_accents": tokenizer_spec.strip_accents}
        if tokenizer_spec.kind in ("teacher", "pretrained"):
            from tfkd.teachers.checkpoints import teacher_tokenizer

            if tokenizer_spec.kind == "teacher" and spec.teacher is None:
                raise StageError(f'vocab: data.{side}_tokenizer.kind is "teacher" but the spec has no teacher')
            checkpoint = spec.teacher.checkpoint if tokenizer_spec.kind == "teacher" else tokenizer_spec.checkpoint
            tokenizer = teacher_tokenizer(
                checkpoint,
                "teacher.checkpoint" if tokenizer_spec.kind == "teacher" else f"data.{side}_tokenizer.checkpoint",
            )
            # the teacher's own normalisation, whatever the spec says
            settings[side] = {"lowercase": tokenizer.lowercase, "strip_accents": tokenizer.strip_accents}
            vocabulary = tokenizer.get_vocabulary()
            if tokenizer_spec.min_count:
                vocabulary = data_lib.prune_vocabulary(tokenizer, sentences, tokenizer_spec.min_count)
                log.info(
                    "vocab: %d of the teacher's %d tokens occur at least %d times on the %s side",
                    len(vocabulary),
                    tokenizer.vocabulary_size(),
                    tokenizer_spec.min_count,
                    side,
                )
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write("\n".join(vocabulary) + "\n")
            os.replace(path + ".tmp", path)
        elif spec.data.shared_vocab and side == "target":
            source = os.path.join(workdir, "source.vocab")
            shutil.copyfile(source, path)
            if "kind" in settings["source"]:  # a SentencePiece model beside the listing
                shutil.copyfile(data_lib.sentencepiece_model_path(source), data_lib.sentencepiece_model_path(path))
                settings[side]["kind"] = settings["source"]["kind"]
        else:
            start = time.time()
            settings[side].update(data_lib.learn_vocabulary(sentences, tokenizer_spec, path))
            log.info(
                "vocab: learned a %s vocabulary of %d tokens for the %s side (asked for %d) in %.1fs",
                _learner(tokenizer_spec),
                _lines(path),
                side,
                tokenizer_spec.vocab_size,
                time.time() - start,
            )
        sizes[side] = _lines(path)
    with open(os.path.join(workdir, "tokenizers.json"), "w") as f:
        json.dump(settings, f)
    log.info("vocab: source %d tokens, target %d tokens", sizes["source"], sizes["target"])
    return {"source_vocab_size": sizes["source"], "target_vocab_size": sizes["target"]}


def _learner(tokenizer_spec):
    return f"SentencePiece {tokenizer_spec.model_type}" if tokenizer_spec.kind == "sentencepiece" else "WordPiece"


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def load_tokenizers(vocab_dir):
    """``Tokenizers(source, target)`` from a vocab stage's files."""
    with open(os.path.join(vocab_dir, "tokenizers.json")) as f:
        settings = json.load(f)
    return Tokenizers(
        *(
            data_lib.make_tokenizer(os.path.join(vocab_dir, f"{side}.vocab"), **settings[side])
            for side in ("source", "target")
        )
    )
