"""Where the built-in entries register themselves, for :mod:`tfkd.registry` (which imports
this module first, then ``LIGHT``; it imports a ``LAZY`` module when a run first looks up one of
its names). Nothing here imports anything.

Every entry registers with ``@tfkd.register(kind, name)`` in the module that defines it. The
modules in ``LIGHT`` import without TensorFlow: they register the tasks, methods and exporters,
and the settings that let a spec be validated before TensorFlow is imported: each built-in
student's schema (:mod:`tfkd.models.configs`) and each built-in layer's constructor arguments
(:mod:`tfkd.layers`).
"""

LIGHT = ("tfkd.models.configs", "tfkd.layers", "tfkd.tasks", "tfkd.methods", "tfkd.exporters")

# kind -> name -> the module whose import registers it
LAZY = {
    "student": {
        "transformer": "tfkd.models.transformer",
        "lstm": "tfkd.models.lstm",
        "abnet": "tfkd.models.abnet",
        "abnet_enc": "tfkd.models.abnet",
        "abnet_enc_parallel": "tfkd.models.abnet",
        "cmlm_transformer": "tfkd.models.cmlm_transformer",
        "bert_classifier": "tfkd.models.bert_classifier",
        "gpt2_lm": "tfkd.models.gpt2_lm",
    },
    "encoder_layer": {"transformer_encoder": "tfkd.layers.blocks"},
    "decoder_layer": {"transformer_decoder": "tfkd.layers.blocks"},
    "adapter": {"bottleneck": "tfkd.layers.adapters", "cross_attention": "tfkd.layers.adapters"},
    "decoder": {"greedy": "tfkd.decoding", "beam": "tfkd.decoding", "mask_predict": "tfkd.decoding.mask_predict"},
}
