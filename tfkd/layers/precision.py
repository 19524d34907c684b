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


def reverse_projection_in_compute_dtype(embedding):
    """Run a ``ReversibleEmbedding``'s reverse projection (the tied output layer: hidden states
    times the transposed token table) in the layer's compute dtype. Keras' ``Embedding`` does
    not autocast its table (``autocast`` is off, so lookups gather float32 rows), so under
    ``mixed_bfloat16`` the reverse matmul cast the bfloat16 hidden states up and ran in float32:
    the step's largest matmul (``[tokens, width] x [width, vocabulary]``, forward and both
    gradients) kept the float32 speed. Logits come out in the compute dtype; the losses cast
    them to float32 before their log-softmax. A no-op under a float32 policy. Returns
    ``embedding``."""
    if embedding.compute_dtype != embedding.variable_dtype:
        embedding.reverse_dtype = embedding.compute_dtype
    return embedding
