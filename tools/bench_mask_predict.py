"""The ``mask_predict`` section of ``tools/bench.py``: an AB-Net's Mask-Predict decoding against
the Marian peer's greedy and beam-4 ``generate()`` of as many tokens (see that file).

    tfkd run specs/abnet_multi30k.yaml --stages vocab
    python tools/bench.py runs/abnet_multi30k --sections mask_predict
"""

import time

from bench_peer import _marian, _padded, _peer_generate, _tfkd_student


class _FixedLengths:
    """A Mask-Predict model whose length predictor ranks ``length`` first, then its neighbours
    (``length - 1``, ``length + 1``, ...), as a trained one ranks lengths around its guess: the
    decoding work is then the same whatever the weights."""

    def __init__(self, model, length):
        self.model, self.length, self.mask_id = model, length, model.mask_id

    def encode(self, *args, **kwargs):
        return self.model.encode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.model.decode(*args, **kwargs)

    def length_logits(self, hidden, padding_mask=None):
        import tensorflow as tf

        logits = self.model.length_logits(hidden, padding_mask)
        distance = tf.abs(tf.range(tf.shape(logits)[1]) - self.length) * 2 - tf.cast(
            tf.range(tf.shape(logits)[1]) < self.length, tf.int32
        )  # ties: the shorter first
        return tf.zeros_like(logits) - tf.cast(distance, logits.dtype)[None]


def _backbone_peer(backbone, tokenizers, special):
    """A ``MarianMTModel`` with a BERT backbone's dimensions on both sides (layers, width,
    heads, feed-forward size, GELU), the run's two vocabularies."""
    layers = len(backbone.transformer_layers)
    return _marian(
        tokenizers,
        special,
        width=backbone.hidden_dim,
        encoder_layers=layers,
        decoder_layers=layers,
        heads=backbone.num_heads,
        ffn=backbone.intermediate_dim,
        activation="gelu",
        dropout=0.0,
        tie_embeddings=True,
    )


def bench_mask_predict(spec, context, args):
    """Mask-Predict (the run's ``decode.iterations`` and ``decode.length_candidates``) on the
    run's AB-Net student, every candidate ``--new-tokens`` long, against the peer's greedy and
    beam-4 ``generate()`` of ``--new-tokens`` tokens with the AB-Net's dimensions."""
    import numpy as np
    import tensorflow as tf

    from tfkd.data import SpecialIds
    from tfkd.decoding.mask_predict import mask_predict, mask_predict_trace

    special = SpecialIds.of(context.tokenizers().target)
    source_pad = SpecialIds.of(context.tokenizers().source).pad
    tokenized = context.task.tokenized(context, "test", "bench")
    sources = [np.asarray(s) for s in tokenized.source_ids.to_list()[: args.sentences]]
    student = _tfkd_student(spec, context)
    if not hasattr(student, "length_logits"):
        raise SystemExit(
            f"{args.run_dir}: student {spec.student.kind} is not decoded by Mask-Predict "
            "(give an AB-Net run: tfkd run specs/abnet_multi30k.yaml --stages vocab)"
        )
    fixed = _FixedLengths(student, args.new_tokens)
    options = {"length_candidates": spec.decode.length_candidates, "iterations": spec.decode.iterations}
    decode = tf.function(
        lambda ids: mask_predict(fixed, ids, special, args.new_tokens + 4, **options),
        autograph=False,
        reduce_retracing=True,
    )
    peer = _backbone_peer(student.target_backbone, context.tokenizers(), special).eval()

    def run_tfkd(batch_size):
        for start in range(0, len(sources), batch_size):
            ids, _ = decode(tf.constant(_padded(sources[start : start + batch_size], source_pad)))
        return int(ids.shape[-1])

    def run_peer(beams, batch_size):
        return _peer_generate(peer, sources, source_pad, beams, batch_size, args.new_tokens)

    trace = mask_predict_trace(
        fixed, tf.constant(_padded(sources[:64], source_pad)), special, args.new_tokens + 4, **options
    )
    lengths = {
        "tfkd mask_predict": run_tfkd(args.batch_sizes[0]),
        "marian greedy": run_peer(1, args.batch_sizes[0]),
        "marian beam4": run_peer(4, args.batch_sizes[0]),
    }
    for batch_size in args.batch_sizes[1:]:
        run_tfkd(batch_size)
    seconds = {}
    for _ in range(args.rounds):
        for batch_size in args.batch_sizes:
            for name, run in (
                ("tfkd mask_predict", run_tfkd),
                ("marian greedy", lambda b: run_peer(1, b)),
                ("marian beam4", lambda b: run_peer(4, b)),
            ):
                start = time.perf_counter()
                run(batch_size)
                seconds[name, batch_size] = seconds.get((name, batch_size), 0.0) + time.perf_counter() - start
    per_sentence = {k: v / (args.rounds * len(sources)) for k, v in seconds.items()}
    backbone = student.target_backbone
    return {
        "sentences": len(sources),
        "new_tokens": lengths,
        "mask_predict": options,
        "decoder_passes_run": int(trace["iterations"]),
        "dimensions": {
            "layers": len(backbone.transformer_layers),
            "hidden_dim": backbone.hidden_dim,
            "num_heads": backbone.num_heads,
            "intermediate_dim": backbone.intermediate_dim,
        },
        "sentences_per_second": {f"{k} batch {b}": round(1 / v, 1) for (k, b), v in per_sentence.items()},
        "ms_per_sentence": {f"{k} batch {b}": round(1000 * v, 2) for (k, b), v in per_sentence.items()},
        "mask_predict_over_marian": {
            f"{peer_name} batch {b}": round(per_sentence[peer_name, b] / per_sentence["tfkd mask_predict", b], 3)
            for peer_name in ("marian greedy", "marian beam4")
            for b in args.batch_sizes
        },
    }
