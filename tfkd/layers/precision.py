"""Layers kept in float32 under a mixed precision policy."""


def masked_lm_head_in_float32(head):
    """Run keras-hub's ``MaskedLMHead`` ``head`` in float32 under a mixed policy (its dense
    layer, layer norm and bias; not the token embedding it is tied to, which belongs to the
    model's body), so its logits are float32, as Keras' mixed-precision guide keeps a model's
    last layer. Under ``mixed_bfloat16`` keras-hub's head otherwise adds its float32 bias to
    bfloat16 logits and fails ("AddV2 ... expected to be a bfloat16 tensor but is a float
    tensor", keras-hub 0.32). Returns ``head``."""
    for layer in head._flatten_layers(include_self=True, recursive=True):
        if layer is not head.token_embedding:
            layer.dtype_policy = "float32"
    return head
