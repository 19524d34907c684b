"""Decoding speed of a run's students side by side: per-sentence latency at batch size 1 and
throughput at batch size 64, each student with its own decoding settings (the main student's
``decode``, a variant's own ``decode``), through the same :class:`Translator` graph the export
serves.

    python tools/bench_decoding.py runs/abnet_multi30k --students train,transformer --sentences 64

``teacher`` names a two_stage run's fine-tuned teacher (the ``teacher_finetune`` stage's model,
decoded with the run's ``decode``), LightPAFF's latency comparison (lightpaff Table 6):

    python tools/bench_decoding.py runs/lightpaff_mass_deen_cpu --students train,teacher --batch-sizes 1

Sentences are the first ``--sentences`` of the test split. Every student decodes the same
sentences in alternating rounds in one process (the first pass of each shape is a warm-up and
not timed), so the ratios are robust to a noisy machine. Prints seconds per sentence of each
at both batch sizes, the ratio of every student's latency to the first's, the mean output
length and the number of Mask-Predict lengths and iterations or the beam size.
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument(
        "--students", default="train,transformer", help="comma-separated train stages (default: train,transformer)"
    )
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,64")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from tfkd.pipeline import open_run
    from tfkd.stages import load_student

    spec, _, context = open_run(args.run_dir)
    sentences = context.task.corpus(context, "test").source[: args.sentences]
    names = args.students.split(",")
    translators, settings = {}, {}
    for name in names:
        own = spec.variant(name) if name in (spec.variants or {}) else spec
        view = context.with_spec(own)
        if name == "teacher":
            from tfkd.methods.two_stage.teacher import load_finetuned_teacher

            student = load_finetuned_teacher(view)
        else:
            student = load_student(view, name)
        decode = own.decode
        translators[name] = context.task.translator(view, student, decode)
        settings[name] = (
            {
                "algorithm": "mask_predict",
                "length_candidates": decode.length_candidates,
                "iterations": decode.iterations,
            }
            if decode.algorithm == "mask_predict"
            else {"algorithm": decode.algorithm, "beam_size": decode.beam_size}
        )
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    def decode_all(translator, batch_size):
        outputs = []
        for start in range(0, len(sentences), batch_size):
            result = translator.translate(tf.constant(sentences[start : start + batch_size]))
            outputs += [t.decode() for t in result["translations"].numpy()]
        return outputs

    lengths = {}
    for name, translator in translators.items():  # warm-up: trace every batch shape once
        for batch_size in batch_sizes:
            lengths[name] = np.mean([len(t.split()) for t in decode_all(translator, batch_size)])
    seconds = {(n, b): 0.0 for n in names for b in batch_sizes}
    for _ in range(args.rounds):
        for batch_size in batch_sizes:
            for name, translator in translators.items():
                start = time.time()
                decode_all(translator, batch_size)
                seconds[name, batch_size] += time.time() - start
    per_sentence = {k: v / (args.rounds * len(sentences)) for k, v in seconds.items()}
    first = names[0]
    print(
        json.dumps(
            {
                "run": args.run_dir,
                "sentences": len(sentences),
                "rounds": args.rounds,
                "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, TensorFlow {tf.__version__}",
                "decoding": settings,
                "mean_output_words": {k: round(float(v), 2) for k, v in lengths.items()},
                "seconds_per_sentence": {
                    f"{n} batch {b}": round(per_sentence[n, b], 4) for n in names for b in batch_sizes
                },
                "sentences_per_second": {
                    f"{n} batch {b}": round(1 / per_sentence[n, b], 1) for n in names for b in batch_sizes
                },
                f"speedup_of_{first}": {
                    f"over {n} batch {b}": round(per_sentence[n, b] / per_sentence[first, b], 2)
                    for n in names[1:]
                    for b in batch_sizes
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
