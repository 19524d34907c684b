"""keras-hub's Transformer blocks, the default encoder and decoder layers of the students
(their constructor arguments are registered in :mod:`tfkd.layers`, to validate specs without
importing keras-hub)."""

import keras_hub

from tfkd import registry

registry.register("encoder_layer", "transformer_encoder")(keras_hub.layers.TransformerEncoder)
registry.register("decoder_layer", "transformer_decoder")(keras_hub.layers.TransformerDecoder)
