"""Declarations of the built-in students, layers and decoders, by module path.

Nothing here imports TensorFlow: an entry is imported when a run first looks it up, so specs
validate without it. Methods and tasks declare themselves in ``tfkd.methods`` and ``tfkd.tasks``.
"""

from tfkd.models.configs import ABNetConfig, ABNetEncConfig, BertClassifierConfig, GPT2LMConfig, LSTMConfig, TransformerConfig
from tfkd.registry import declare

declare("student", "transformer", "tfkd.models.transformer:TransformerSeq2Seq", schema=TransformerConfig)
declare("student", "lstm", "tfkd.models.lstm:LSTMSeq2Seq", schema=LSTMConfig)
declare("student", "abnet", "tfkd.models.abnet:ABNet", schema=ABNetConfig)
declare("student", "abnet_enc", "tfkd.models.abnet:ABNetEnc", schema=ABNetEncConfig)
declare("student", "bert_classifier", "tfkd.models.bert_classifier:BertClassifier", schema=BertClassifierConfig)
declare("student", "gpt2_lm", "tfkd.models.gpt2_lm:GPT2LM", schema=GPT2LMConfig)

# keras-hub's blocks; the argument lists let a spec be checked without importing keras-hub
# (tests/test_registry.py compares them with the real constructors)
_BLOCK_ARGUMENTS = ("intermediate_dim", "num_heads", "dropout", "activation", "layer_norm_epsilon",
                    "kernel_initializer", "bias_initializer", "normalize_first")
declare("encoder_layer", "transformer_encoder", "keras_hub.layers:TransformerEncoder",
        arguments=_BLOCK_ARGUMENTS, required=("intermediate_dim", "num_heads"))
declare("decoder_layer", "transformer_decoder", "keras_hub.layers:TransformerDecoder",
        arguments=_BLOCK_ARGUMENTS, required=("intermediate_dim", "num_heads"))

# AB-Net's adapters (tests/layers/test_adapters.py compares the argument lists with the constructors)
declare("adapter", "bottleneck", "tfkd.layers.adapters:BottleneckAdapter",
        arguments=("adapter_dim", "layer_norm_epsilon", "kernel_initializer"), required=("adapter_dim",))
declare("adapter", "cross_attention", "tfkd.layers.adapters:CrossAttentionAdapter",
        arguments=("num_heads", "key_dim", "dropout", "layer_norm_epsilon", "kernel_initializer"),
        required=("num_heads",))

declare("decoder", "greedy", "tfkd.decoding:greedy_search")
declare("decoder", "beam", "tfkd.decoding:beam_search")
declare("decoder", "mask_predict", "tfkd.decoding.mask_predict:mask_predict")
