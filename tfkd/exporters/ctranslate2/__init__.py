"""``export.format: ctranslate2``: a CTranslate2 model folder of a Transformer translation
student or a GPT-2 language model, for fast CPU (and GPU) decoding, optionally quantized
(``export.quantization``, ``tfkd export --format ctranslate2 --quantization int8``), as
OpenNMT-tf's ``export --format ctranslate2`` writes one.

``<model_name>/<version>.ctranslate2/`` holds CTranslate2's ``model.bin``, ``config.json`` and
vocabularies, written by CTranslate2's own converter from a spec of its Python API
(:mod:`.transformer` maps the Transformer's Keras weights, :mod:`.gpt2` GPT-2's), and
what ``tfkd translate`` / ``tfkd generate`` need to serve it like a SavedModel: the run's
tokenizer files (``vocab/``) and ``tfkd.json`` (the decoding settings, the longest source, how
the run scored BLEU). TF Serving ignores the folder (not a number). Tokenization stays tfkd's:
:mod:`.translator` tokenizes with the run's WordPiece or SentencePiece model, decodes with
CTranslate2 and detokenizes as the SavedModel does (:mod:`.gpt2` likewise with the
run's byte-level BPE). A BERT classifier is not exported: CTranslate2's encoder spec holds
BERT's layers and pooler but not a classification head.

``ctranslate2`` is an optional extra (``pip install -e ".[ctranslate2]"``).
"""

import json
import os
import shutil

from tfkd import registry
from tfkd.errors import StageError
from tfkd.exporters.base import Exporter
from tfkd.exporters.ctranslate2.folder import (
    DECODER_ONLY,
    FORMAT,
    INFO_FILE,
    SEQ2SEQ,
    VOCAB_DIR,
    import_ctranslate2,
    is_ctranslate2_export,
)


@registry.register("exporter", FORMAT)
class CTranslate2Exporter(Exporter):
    """``<model_name>/<version>.ctranslate2/``: a CTranslate2 model of the student, quantized as
    ``export.quantization`` says, with the run's tokenizers and decoding settings."""

    name = FORMAT
    writes = "a CTranslate2 model folder with the run's tokenizers (tfkd translate serves it)"
    suffix = ".ctranslate2"

    @classmethod
    def find(cls, path):
        return path if is_ctranslate2_export(path) else None

    @classmethod
    def predictor(cls, path, batch_size=None):
        with open(os.path.join(path, INFO_FILE)) as f:
            model = json.load(f)["model"]
        if model == DECODER_ONLY:
            from tfkd.exporters.ctranslate2.gpt2 import CTranslate2Generator

            runtime = CTranslate2Generator(path)
            runtime.batch_size = batch_size or runtime.batch_size
            return runtime.predict, {**runtime.info, "output": "continuation"}
        from tfkd.exporters.ctranslate2.translator import CTranslate2Translator

        translator = CTranslate2Translator(path)
        translator.batch_size = batch_size or translator.batch_size

        def predict(lines):
            return translator.translate_all(lines, progress=True)[0]

        return predict, {**translator.info, "output": "translations"}

    def write(self, context, student, path):
        import_ctranslate2()
        from tfkd.models import GPT2LM, TransformerSeq2Seq

        spec = context.spec
        if isinstance(student, GPT2LM):
            info = self._write_decoder_only(context, student, path)
        elif isinstance(student, TransformerSeq2Seq):
            info = self._write_seq2seq(context, student, path)
        else:
            raise StageError(
                f"export.format ctranslate2: a {type(student).__name__} student; CTranslate2 holds the "
                "Transformer translation student and the GPT-2 language model (a BERT classifier's "
                "head is not a CTranslate2 model); export this one with format saved_model"
            )
        shutil.copytree(
            context.runner.stage_dir("vocab"),
            os.path.join(path, VOCAB_DIR),
            ignore=shutil.ignore_patterns("KEY", "INPUTS.json", "stage.json", "spec.yaml"),
        )
        info = {
            "format": FORMAT,
            "task": spec.task,
            "quantization": spec.export.quantization or "float32",
            "decode": spec.decode.model_dump(mode="json"),
            **info,
        }
        with open(os.path.join(path, INFO_FILE), "w") as f:
            json.dump(info, f, indent=1)

    @staticmethod
    def _write_seq2seq(context, student, path):
        from tfkd.exporters.ctranslate2.transformer import convert, transformer_spec

        spec = context.spec
        if spec.decode.algorithm not in ("beam", "greedy"):
            raise StageError(
                f"export.format ctranslate2: decode.algorithm {spec.decode.algorithm!r}: "
                "CTranslate2 decodes autoregressively (beam or greedy)"
            )
        _check_precision(spec)
        tokenizers = context.tokenizers()
        convert(transformer_spec(student, tokenizers.source, tokenizers.target), path, spec.export.quantization)
        return {
            "model": SEQ2SEQ,
            "max_tokens": spec.data.max_tokens,
            "max_target_length": min(spec.data.max_tokens, student.max_length),
            "evaluate": spec.evaluate.model_dump(include={"lowercase", "tokenize"}),
        }

    @staticmethod
    def _write_decoder_only(context, student, path):
        from tfkd.exporters.ctranslate2.gpt2 import check_sampler, gpt2_spec
        from tfkd.exporters.ctranslate2.transformer import convert

        check_sampler(context.spec.decode)
        _check_precision(context.spec)
        convert(gpt2_spec(student, context.tokenizers().text), path, context.spec.export.quantization)
        return {"model": DECODER_ONLY, "max_length": student.max_sequence_length}


def _check_precision(spec):
    """``decode.precision`` is the precision of TensorFlow's graph; CTranslate2 computes in the
    type of the weights it is given (``export.quantization``)."""
    if spec.decode.precision != "float32":
        raise StageError(
            f"export.format ctranslate2: decode.precision {spec.decode.precision} applies to TensorFlow's graph; "
            f"CTranslate2 computes in the type of its weights: set export.quantization: {spec.decode.precision} "
            "(or int8_bfloat16) and leave decode.precision float32"
        )
