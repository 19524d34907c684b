"""What the sections of ``tools/bench.py`` share: tfkd's student built from a run's spec, the
Hugging Face Marian peer with the same dimensions and vocabularies, and its ``generate()``."""


def _tfkd_student(spec, context):
    return context.task.build_student(spec, context.tokenizers())


def _peer(spec, tokenizers, special):
    """A ``MarianMTModel`` with the run's student's dimensions and vocabularies."""
    s = spec.student
    return _marian(
        tokenizers,
        special,
        width=s.hidden_dim,
        encoder_layers=s.encoder_layers,
        decoder_layers=s.decoder_layers,
        heads=s.num_heads,
        ffn=s.intermediate_dim,
        activation="relu",
        # keras-hub's blocks apply ``dropout`` to the attention probabilities too
        dropout=s.dropout,
        tie_embeddings=bool(s.tie_embeddings),
    )


def _marian(
    tokenizers, special, *, width, encoder_layers, decoder_layers, heads, ffn, activation, dropout, tie_embeddings
):
    """A ``MarianMTModel`` of these dimensions over the run's two vocabularies (its own source
    and target embeddings), with the run's special ids."""
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=tokenizers.source.vocabulary_size(),
        decoder_vocab_size=tokenizers.target.vocabulary_size(),
        share_encoder_decoder_embeddings=False,
        tie_word_embeddings=tie_embeddings,
        d_model=width,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        activation_function=activation,
        dropout=dropout,
        attention_dropout=dropout,
        activation_dropout=0.0,
        max_position_embeddings=512,
        pad_token_id=special.pad,
        eos_token_id=special.eos,
        decoder_start_token_id=special.bos,
        forced_eos_token_id=None,
        scale_embedding=True,
    )
    return MarianMTModel(config)


def _padded(rows, pad):
    """Token id rows as one ``[N, longest]`` int32 array, right-padded with ``pad``."""
    import numpy as np

    width = max(len(r) for r in rows)
    return np.stack([np.pad(r, (0, width - len(r)), constant_values=pad) for r in rows]).astype("int32")


def _peer_generate(peer, sources, pad, beams, batch_size, new_tokens):
    """The peer's ``generate()`` over ``sources`` in batches, exactly ``new_tokens`` tokens a
    sentence; returns the length of the last batch's outputs (without the start token)."""
    import torch

    with torch.inference_mode():
        for start in range(0, len(sources), batch_size):
            ids = torch.from_numpy(_padded(sources[start : start + batch_size], pad).astype("int64"))
            out = peer.generate(
                input_ids=ids,
                attention_mask=ids != pad,
                num_beams=beams,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                length_penalty=0.6 if beams > 1 else 1.0,
            )
    return out.shape[-1] - 1
