"""Where decoding's time goes: TensorFlow's profiler over a run's trained translation student
translating its real test sentences, as ``tfkd translate`` and the SavedModel decode them, op
times summed by what they compute.

    tfkd run specs/baseline_multi30k.yaml
    python tools/profile_decode.py runs/baseline_multi30k --sentences 256 --batch-size 64
    python tools/profile_decode.py runs/baseline_multi30k --set decode.algorithm=greedy --batch-size 1

The run's ``Translator`` (the graph ``evaluate`` and ``tfkd translate`` run, the one the
SavedModel exports) translates ``--sentences`` test sentences in length-sorted batches of
``--batch-size``; every batch shape is traced first, then the same batches run under
``tf.profiler``. Printed as JSON: sentences per second; op time per sentence by part of the
model (the encoder, the decoder's self-attention with its key/value caches, its cross-attention,
feed-forward, layer norms, the output layer over the target vocabulary, the search's own
bookkeeping: top-k, the beams' gathers and reorders, scatters of tokens) and by kind of op
(matrix products, gathers, layout, ...); the threads' idle time; the ops that took longest. Then
the decoder's work, counted by a further pass over the same batches (the student's
``decode_next`` adding to two variables the traced graph updates): its steps, and the rows
they computed against the rows had every sentence stayed in its batch to the batch's last step
(what finished sentences leaving the batch saves). The trace stays in ``--trace-dir`` for
TensorBoard's profile plugin.
"""

import argparse
import collections
import json
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from profile_step import kind_of, profiled  # noqa: E402

# (part, substrings of an op's full name, first match wins)
PARTS = [
    ("encoder", ("encoder_",)),
    ("decoder self-attention and its caches", ("self_attention",)),
    ("decoder cross-attention", ("cross_attention",)),
    ("decoder feed-forward", ("feedforward", "intermediate_dense", "output_dense")),
    ("layer norms", ("layer_norm", "decoder_norm")),
    ("embeddings and the output layer", ("embedding", "position_encoding", "output_projection")),
    ("search: log-softmax and top-k", ("LogSoftmax", "log_softmax", "TopK", "top_k")),
    ("search: beams' gathers, scatters and reorders", ("Gather", "Scatter", "gather", "scatter")),
]


def part_of(name, op_type):
    for part, needles in PARTS:
        if any(n in name or n in op_type for n in needles):
            return part
    return "other"


def decoder_work(context, student, sentences, batch_size):
    """Rows the decoder computed, summed over its steps, over ``sentences`` in the translator's
    length-sorted batches, against the rows had every sentence stayed in its batch to the
    batch's last step: a translator whose student's ``decode_next`` adds its rows and steps to
    two counters (variables, so the traced graph counts as it runs)."""
    import tensorflow as tf

    from tfkd.tasks.translation.inference import translate_in_batches

    rows, steps = tf.Variable(0, dtype=tf.int64), tf.Variable(0, dtype=tf.int64)
    decode_next = student.decode_next

    def counted(token_ids, *args, **kwargs):
        rows.assign_add(tf.cast(tf.shape(token_ids)[0], tf.int64))
        steps.assign_add(1)
        return decode_next(token_ids, *args, **kwargs)

    student.decode_next = counted
    try:
        translator = context.task.translator(context, student)
        width = translator.decode_options["beam_size"] if translator.algorithm == "beam" else 1
        if_none_left = 0

        def batch(sentences):
            nonlocal if_none_left
            before = int(steps.numpy())
            out = translator.translate(sentences)
            if_none_left += (int(steps.numpy()) - before) * width * int(sentences.shape[0])
            return out

        translate_in_batches(batch, sentences, batch_size)
    finally:
        del student.decode_next
    computed = int(rows.numpy())
    return {
        "decoder_steps": int(steps.numpy()),
        "decoder_rows_computed": computed,
        "decoder_rows_if_none_left": if_none_left,
        "share_of_rows_computed": round(computed / max(if_none_left, 1), 3),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run whose student has trained")
    parser.add_argument("--sentences", type=int, default=256, help="test sentences translated (default 256)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--set", action="append", default=[], help="a decode setting, as tfkd translate takes it")
    parser.add_argument("--trace-dir", help="where the profile goes (default: a temporary folder)")
    args = parser.parse_args()

    import tensorflow as tf

    from tfkd.cli.translate import decode_overrides
    from tfkd.pipeline import open_run
    from tfkd.stages import load_student
    from tfkd.tasks.translation.inference import translate_in_batches

    spec, _, context = open_run(args.run_dir)
    spec = spec.model_copy(update={"decode": decode_overrides(spec.decode, args.set)})
    context = context.with_spec(spec)
    student = load_student(context)
    sentences = context.task.corpus(context, "test").source[: args.sentences]
    translator = context.task.translator(context, student)
    translate = translator.translate
    translate_in_batches(translate, sentences, args.batch_size)  # trace every batch shape
    trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="tfkd-profile-decode-")
    wall, times, types = profiled(lambda: translate_in_batches(translate, sentences, args.batch_size), trace_dir)
    idle = times.pop("IDLE", 0.0)
    parts, kinds = collections.Counter(), collections.Counter()
    for name, micros in times.items():
        parts[part_of(name, types.get(name, ""))] += micros
        kinds[kind_of(types.get(name, ""))] += micros
    count = len(sentences)
    total = sum(parts.values())
    work = decoder_work(context, student, sentences, args.batch_size)

    def per_sentence(counter):
        return {k: round(v / 1000 / count, 3) for k, v in counter.most_common()}

    print(
        json.dumps(
            {
                "run": args.run_dir,
                "decode": spec.decode.model_dump(mode="json"),
                "sentences": count,
                "batch_size": args.batch_size,
                "trace": trace_dir,
                "tensorflow": tf.__version__,
                "sentences_per_second": round(count / wall, 1),
                **work,
                "op_ms_per_sentence": round(total / 1000 / count, 3),
                "op_share_by_part": {k: round(v / total, 3) for k, v in parts.most_common()},
                "op_ms_per_sentence_by_part": per_sentence(parts),
                "op_ms_per_sentence_by_kind": per_sentence(kinds),
                "idle_thread_ms_per_sentence": round(idle / 1000 / count, 3),
                "note": "op and idle times are summed over the threads that ran ops, so together they exceed "
                "the wall time",
                "top_ops_ms_per_sentence": {k: round(v / 1000 / count, 3) for k, v in times.most_common(15)},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
