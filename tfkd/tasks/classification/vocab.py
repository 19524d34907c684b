"""The vocabulary and the label names of a classification run (the generic vocab stage calls
:func:`build_vocabulary`): ``text.vocab``, ``tokenizers.json`` and ``labels.json``."""

import collections
import json
import logging
import os

from tfkd import data as data_lib
from tfkd.errors import StageError

log = logging.getLogger("tfkd")

# text: the WordPiece tokenizer of the input; labels: the label names, in label id order
ClassificationTokenizers = collections.namedtuple("ClassificationTokenizers", ["text", "labels"], defaults=(None,))

VOCAB_FILE = "text.vocab"
SETTINGS_FILE = "tokenizers.json"
LABELS_FILE = "labels.json"


def training_label_names(spec, rows):
    """``data.labels``, or the sorted distinct labels of the training rows; checks the rows'
    labels against them (a :class:`~tfkd.errors.DataError` naming the row)."""
    from tfkd.tasks.classification.data import distinct_labels, label_ids

    names = list(spec.data.labels) if spec.data.labels else distinct_labels(rows)
    label_ids(rows, names)  # every training label must be one of data.labels
    if len(names) < 2:
        raise StageError(
            f"vocab: {rows.origin} has {len(names)} distinct label(s) ({', '.join(names)}); "
            "a classifier needs at least 2 (list them in data.labels)"
        )
    return names


def build_vocabulary(task, context, workdir):
    spec = context.spec
    tokenizer_spec = spec.data.tokenizer
    rows = task.rows(context, "train")
    labels = training_label_names(spec, rows)
    path = os.path.join(workdir, VOCAB_FILE)
    settings = {"lowercase": tokenizer_spec.lowercase, "strip_accents": tokenizer_spec.strip_accents}
    if tokenizer_spec.kind in ("teacher", "pretrained"):
        from tfkd.teachers.checkpoints import teacher_tokenizer

        if tokenizer_spec.kind == "teacher" and spec.teacher is None:
            raise StageError('vocab: data.tokenizer.kind is "teacher" but the spec has no teacher')
        checkpoint = spec.teacher.checkpoint if tokenizer_spec.kind == "teacher" else tokenizer_spec.checkpoint
        tokenizer = teacher_tokenizer(checkpoint, "data.tokenizer.checkpoint")
        # the teacher's own normalisation, whatever the spec says
        settings = {"lowercase": tokenizer.lowercase, "strip_accents": tokenizer.strip_accents}
        vocabulary = tokenizer.get_vocabulary()
        if tokenizer_spec.min_count:
            vocabulary = data_lib.prune_vocabulary(tokenizer, rows.texts, tokenizer_spec.min_count)
            log.info(
                "vocab: %d of the teacher's %d tokens occur at least %d times in the training texts",
                len(vocabulary),
                tokenizer.vocabulary_size(),
                tokenizer_spec.min_count,
            )
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write("\n".join(vocabulary) + "\n")
        os.replace(path + ".tmp", path)
    else:
        log.info(
            "vocab: learning a %d-token vocabulary (%s) from %d training texts",
            tokenizer_spec.vocab_size,
            tokenizer_spec.kind,
            len(rows),
        )
        settings.update(data_lib.learn_vocabulary(rows.texts, tokenizer_spec, path))
    with open(path, encoding="utf-8") as f:
        size = sum(1 for _ in f)
    with open(os.path.join(workdir, SETTINGS_FILE), "w") as f:
        json.dump({"text": settings}, f)
    with open(os.path.join(workdir, LABELS_FILE), "w") as f:
        json.dump(labels, f)
    log.info("vocab: %d tokens; %d labels: %s", size, len(labels), ", ".join(labels))
    return {"vocabulary_size": size, "num_classes": len(labels), "labels": labels}


def load_tokenizers(vocab_dir):
    """``ClassificationTokenizers(text, labels)`` from a vocab stage's files."""
    with open(os.path.join(vocab_dir, SETTINGS_FILE)) as f:
        settings = json.load(f)
    with open(os.path.join(vocab_dir, LABELS_FILE)) as f:
        labels = json.load(f)
    return ClassificationTokenizers(
        data_lib.make_tokenizer(os.path.join(vocab_dir, VOCAB_FILE), **settings["text"]), labels
    )
