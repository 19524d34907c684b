"""``export.format: ctranslate2``: a CTranslate2 model folder of a Transformer translation
student, for fast CPU (and GPU) decoding, optionally quantized (``export.quantization``,
``tfkd export --format ctranslate2 --quantization int8``), as OpenNMT-tf's ``export --format
ctranslate2`` writes one.

``<model_name>/<version>.ctranslate2/`` holds CTranslate2's ``model.bin``, ``config.json`` and
vocabularies, written by CTranslate2's own converter from a spec of its Python API
(:mod:`.transformer` maps the Keras weights), and what ``tfkd translate`` needs to serve it like
a SavedModel: the run's tokenizer files (``vocab/``) and ``tfkd.json`` (the decoding settings,
the longest source, how the run scored BLEU). TF Serving ignores the folder (not a number).
Tokenization stays tfkd's: :mod:`.translator` tokenizes with the run's WordPiece or SentencePiece
model, decodes with CTranslate2 and detokenizes as the SavedModel does.

``ctranslate2`` is an optional extra (``pip install -e ".[ctranslate2]"``).
"""

import json
import os
import shutil

from tfkd import registry
from tfkd.errors import StageError
from tfkd.exporters.base import Exporter

# what tfkd keeps in a CTranslate2 folder beside CTranslate2's own files
INFO_FILE = "tfkd.json"
VOCAB_DIR = "vocab"
FORMAT = "ctranslate2"


def import_ctranslate2():
    """The ``ctranslate2`` module, or one line saying how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise StageError(
            'export.format ctranslate2 needs the ctranslate2 package: pip install -e ".[ctranslate2]"'
        ) from None
    return ctranslate2


def is_ctranslate2_export(path):
    """True for a folder this exporter wrote."""
    info = os.path.join(path, INFO_FILE)
    if not os.path.isfile(os.path.join(path, "model.bin")) or not os.path.isfile(info):
        return False
    with open(info) as f:
        return json.load(f).get("format") == FORMAT


@registry.register("exporter", FORMAT)
class CTranslate2Exporter(Exporter):
    """``<model_name>/<version>.ctranslate2/``: a CTranslate2 Transformer model, quantized as
    ``export.quantization`` says, with the run's tokenizers and decoding settings."""

    name = FORMAT
    writes = "a CTranslate2 model folder with the run's tokenizers (tfkd translate serves it)"
    suffix = ".ctranslate2"

    @classmethod
    def find(cls, path):
        return path if is_ctranslate2_export(path) else None

    @classmethod
    def predictor(cls, path, batch_size=None):
        from tfkd.exporters.ctranslate2.translator import CTranslate2Translator

        translator = CTranslate2Translator(path)
        if batch_size:
            translator.batch_size = batch_size

        def predict(lines):
            return translator.translate_all(lines, progress=True)[0]

        return predict, {**translator.info, "output": "translations"}

    def write(self, context, student, path):
        import_ctranslate2()
        from tfkd.exporters.ctranslate2.transformer import convert

        spec = context.spec
        decode = spec.decode
        if getattr(decode, "algorithm", None) not in ("beam", "greedy"):
            raise StageError(
                f"export.format ctranslate2: decode.algorithm {getattr(decode, 'algorithm', None)!r}: "
                "CTranslate2 decodes autoregressively (beam or greedy)"
            )
        tokenizers = context.tokenizers()
        quantization = spec.export.quantization or "float32"
        convert(student, tokenizers.source, tokenizers.target, path, quantization)
        shutil.copytree(
            context.runner.stage_dir("vocab"),
            os.path.join(path, VOCAB_DIR),
            ignore=shutil.ignore_patterns("KEY", "INPUTS.json", "stage.json", "spec.yaml"),
        )
        info = {
            "format": FORMAT,
            "task": spec.task,
            "quantization": quantization,
            "decode": decode.model_dump(mode="json"),
            "max_tokens": spec.data.max_tokens,
            "max_target_length": min(spec.data.max_tokens, student.max_length),
            "evaluate": spec.evaluate.model_dump(include={"lowercase", "tokenize"}),
        }
        with open(os.path.join(path, INFO_FILE), "w") as f:
            json.dump(info, f, indent=1)
