"""What a CTranslate2 export folder holds besides CTranslate2's own files (``tfkd.json``, the
run's tokenizer files in ``vocab/``), and importing ``ctranslate2`` with one line when it is
missing. Imports nothing of TensorFlow or CTranslate2 itself."""

import json
import os

from tfkd.errors import StageError

# what tfkd keeps in a CTranslate2 folder beside CTranslate2's own files
INFO_FILE = "tfkd.json"
VOCAB_DIR = "vocab"
FORMAT = "ctranslate2"
# what a CTranslate2 folder holds (tfkd.json's "model"): a Translator's or a Generator's model
SEQ2SEQ, DECODER_ONLY = "seq2seq", "decoder_only"


def import_ctranslate2():
    """The ``ctranslate2`` module, or one line saying how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise StageError(
            'export.format ctranslate2 needs the ctranslate2 package: pip install -e ".[ctranslate2]"'
        ) from None
    return ctranslate2


def default_threads(quantization=None):
    """OpenMP threads per CTranslate2 call. For int8 weights, one: with two, CTranslate2
    4.8.5's int8 kernels spent most of a batch-1 beam-4 step waiting on each other (64-107 ms a
    sentence against 3.7 ms with one thread on 2 CPUs, and no slower at batch 64). Otherwise
    CTranslate2's own default (4), but no more than the CPUs this process may run on (4 threads
    on 2 CPUs spin against each other)."""
    if quantization is not None and quantization.startswith("int8"):
        return 1
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def open_runtime(kind, path, info, device, compute_type, intra_threads):
    """``ctranslate2.<kind>`` (``Translator`` or ``Generator``) of the export folder ``path``
    whose ``tfkd.json`` is ``info``, with ``intra_threads`` or :func:`default_threads` of the
    weights it runs (``compute_type``, or ``default``: as the export was quantized)."""
    weights = compute_type if compute_type != "default" else info.get("quantization")
    runtime = getattr(import_ctranslate2(), kind)
    return runtime(
        path, device=device, compute_type=compute_type, intra_threads=intra_threads or default_threads(weights)
    )


def is_ctranslate2_export(path):
    """True for a folder this exporter wrote."""
    info = os.path.join(path, INFO_FILE)
    if not os.path.isfile(os.path.join(path, "model.bin")) or not os.path.isfile(info):
        return False
    with open(info) as f:
        return json.load(f).get("format") == FORMAT
