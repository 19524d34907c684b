"""The GPT-2 language-model student as a CTranslate2 ``TransformerDecoderModelSpec``, and
continuations from it with the run's byte-level BPE tokenizer.

keras-hub's GPT-2 is a pre-norm decoder with learned positions, tanh-approximated GELU,
unscaled embeddings, a final layer norm and the output tied to the token embedding; CTranslate2's
decoder spec takes each as it is. A continuation goes as the SavedModel's ``continuation``
output does (:class:`tfkd.tasks.language_model.export.TextLM`): the prompt's last tokens that
fit before ``max_new_tokens`` new ones, after ``<|endoftext|>``; up to ``max_new_tokens`` tokens
from the run's sampler, stopping at ``<|endoftext|>``; bytes that do not form UTF-8 become
U+FFFD. Greedy continuations equal the SavedModel's; top-k and top-p draw from CTranslate2's own
random generator, so they follow the same distribution but not the same draws.
"""

import json
import os

import numpy as np

from tfkd import registry
from tfkd.errors import StageError
from tfkd.exporters.ctranslate2.folder import INFO_FILE, VOCAB_DIR, import_ctranslate2, open_runtime
from tfkd.exporters.ctranslate2.transformer import vocabulary

LAYER_NORM_EPSILON = 1e-5  # keras-hub's GPT-2


def gpt2_spec(student, tokenizer):
    """A filled ``ctranslate2.specs.TransformerDecoderModelSpec`` of a :class:`GPT2LM`."""
    from ctranslate2.specs import TransformerDecoderModelSpec, TransformerDecoderSpec, common_spec

    from tfkd.exporters.ctranslate2.transformer import _attention, _embedding, _feed_forward, _layer_norm

    backbone = student.backbone
    decoder = TransformerDecoderSpec(
        backbone.num_layers,
        backbone.num_heads,
        pre_norm=True,
        activation=common_spec.Activation.GELUTanh,
        with_encoder_attention=False,
    )
    decoder.scale_embeddings = False
    _embedding(decoder.embeddings, backbone.get_layer("token_embedding"))
    decoder.position_encodings.encodings = np.asarray(
        backbone.get_layer("position_embedding").position_embeddings, np.float32
    )
    for i, layer_spec in enumerate(decoder.layer):
        block = backbone.get_layer(f"transformer_layer_{i}")
        _attention(layer_spec.self_attention, block._self_attention_layer, block._self_attention_layer_norm, True)
        _feed_forward(layer_spec.ffn, block)
    _layer_norm(decoder.layer_norm, backbone.get_layer("layer_norm"))
    decoder.projection.weight = np.asarray(backbone.get_layer("token_embedding").embeddings, np.float32)
    spec = TransformerDecoderModelSpec(decoder)
    spec.config.layer_norm_epsilon = LAYER_NORM_EPSILON
    spec.config.bos_token = spec.config.eos_token = spec.config.unk_token = tokenizer.end_token
    spec.register_vocabulary(vocabulary(tokenizer))
    return spec


def check_sampler(decode):
    if decode.sampler not in ("greedy", "top_k", "top_p"):
        raise StageError(f"export.format ctranslate2: decode.sampler {decode.sampler!r} has no CTranslate2 equivalent")


class CTranslate2Generator:
    """Continue raw strings with a CTranslate2 export of a language model (``path``)."""

    def __init__(self, path, device="cpu", compute_type="default", intra_threads=None):
        import tensorflow as tf

        ctranslate2 = import_ctranslate2()
        with open(os.path.join(path, INFO_FILE)) as f:
            self.info = json.load(f)
        self.tokenizer = registry.lookup("task", self.info["task"]).load_tokenizers(os.path.join(path, VOCAB_DIR)).text
        self.vocabulary = vocabulary(self.tokenizer)
        self.index = {token: i for i, token in enumerate(self.vocabulary)}
        self.end = self.tokenizer.end_token  # <|endoftext|>
        decode = self.info["decode"]
        self.max_new_tokens = decode["max_new_tokens"]
        self.batch_size = decode["batch_size"]
        self.sampling = {"sampling_temperature": decode["temperature"]}
        if decode["sampler"] == "top_k":
            self.sampling.update(sampling_topk=decode["top_k"])
        elif decode["sampler"] == "top_p":
            self.sampling.update(sampling_topk=0, sampling_topp=decode["top_p"])
        if decode["seed"] is not None and decode["sampler"] != "greedy":
            ctranslate2.set_random_seed(decode["seed"])
        self.room = self.info["max_length"] - self.max_new_tokens - 1
        self.generator = open_runtime("Generator", path, self.info, device, compute_type, intra_threads)
        self._tokenize = tf.function(self.tokenizer.tokenize)
        self._detokenize = tf.function(self.tokenizer.detokenize)
        self.tf = tf

    def continuations(self, texts):
        """The continuation of each text (a list of strings), as the SavedModel gives it."""
        tf = self.tf
        if not texts:
            return []
        rows = self._tokenize(tf.constant(texts, tf.string)).to_list()
        prompts = [[self.end] + [self.vocabulary[i] for i in row[max(len(row) - self.room, 0) :]] for row in rows]
        # CTranslate2 forwards the prompts at once only when none is <|endoftext|> alone (a batch
        # with such a prompt is decoded token by token and gives the others' prompts back as
        # output): the empty texts go in a batch of their own
        new = [None] * len(prompts)
        for rows in (
            [i for i, p in enumerate(prompts) if len(p) > 1],
            [i for i, p in enumerate(prompts) if len(p) == 1],
        ):
            if not rows:
                continue
            results = self.generator.generate_batch(
                [prompts[i] for i in rows],
                max_length=self.max_new_tokens,
                end_token=self.end,
                include_prompt_in_result=False,
                **self.sampling,
            )
            for i, result in zip(rows, results):
                new[i] = [self.index[t] for t in result.sequences[0] if t != self.end]
        ragged = tf.ragged.constant(new, dtype=tf.int32, ragged_rank=1) if any(new) else None
        if ragged is None:
            return ["" for _ in texts]
        text = self._detokenize(ragged)
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
        return [t.decode("utf-8") for t in text.numpy()]

    def predict(self, lines):
        outputs = []
        for start in range(0, len(lines), self.batch_size):
            outputs += self.continuations(lines[start : start + self.batch_size])
        return outputs
