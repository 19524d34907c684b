"""Decoding speed of a run's students side by side: per-sentence latency at batch size 1 and
throughput at batch size 64, each student with its own decoding settings (the main student's
``decode``, a variant's own ``decode``), through the same :class:`Translator` graph the export
serves.

    python tools/bench_decoding.py runs/abnet_multi30k --students train,transformer --sentences 64

``teacher`` names a two_stage run's fine-tuned teacher (the ``teacher_finetune`` stage's model,
decoded with the run's ``decode``), LightPAFF's latency comparison (lightpaff Table 6):

    python tools/bench_decoding.py runs/lightpaff_mass_deen_cpu --students train,teacher --batch-sizes 1

``--exports`` adds SavedModels (a version folder, or a model folder: its newest version) to the
systems timed, each through its ``serving_default`` signature as TF Serving would call it;
two exports of one run made by two checkouts of tfkd compare their decoders on the same
weights (``--students ''`` times the exports alone):

    python tools/bench_decoding.py runs/baseline_multi30k --students '' --exports a/baseline_multi30k,b/1

Sentences are the first ``--sentences`` of the run's test split. Every system decodes the same
sentences in alternating rounds in one process (the first pass of each shape is a warm-up and
not timed), so the ratios are robust to a noisy machine. Prints seconds per sentence of each
at both batch sizes, the ratio of every system's latency to the first's, the mean output
length and the number of Mask-Predict lengths and iterations or the beam size.
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def student_systems(context, spec, names):
    """``{name: translate}`` (strings -> translations) of the run's students ``names``, and
    their decoding settings."""
    import tensorflow as tf

    from tfkd.stages import load_student

    systems, settings = {}, {}
    for name in names:
        own = spec.variant(name) if name in (spec.variants or {}) else spec
        view = context.with_spec(own)
        if name == "teacher":
            from tfkd.methods.two_stage.teacher import load_finetuned_teacher

            student = load_finetuned_teacher(view)
        else:
            student = load_student(view, name)
        decode = own.decode
        translator = context.task.translator(view, student, decode)
        systems[name] = lambda batch, t=translator: t.translate(tf.constant(batch))["translations"]
        settings[name] = (
            {
                "algorithm": "mask_predict",
                "length_candidates": decode.length_candidates,
                "iterations": decode.iterations,
            }
            if decode.algorithm == "mask_predict"
            else {"algorithm": decode.algorithm, "beam_size": decode.beam_size}
        )
    return systems, settings


def export_systems(paths):
    """``{path: translate}`` of SavedModels, each through its ``serving_default`` signature."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    from tfkd.serving import find_saved_model

    systems = {}
    for path in paths:
        found = find_saved_model(path)
        if found is None:
            raise SystemExit(f"bench_decoding: {path}: no SavedModel there (nor a numbered version under it)")
        serve = tf.saved_model.load(found).signatures["serving_default"]
        systems[path] = lambda batch, s=serve: s(source=tf.constant(batch))["translations"]
    return systems


def timed(systems, sentences, batch_sizes, rounds):
    """``(seconds per sentence {(name, batch size): s}, mean output words {name: n})``:
    alternating rounds over the systems, after a warm-up of every batch shape."""
    import numpy as np

    def decode_all(translate, batch_size):
        outputs = []
        for start in range(0, len(sentences), batch_size):
            outputs += [t.decode() for t in translate(sentences[start : start + batch_size]).numpy()]
        return outputs

    lengths = {}
    for name, translate in systems.items():  # warm-up: trace every batch shape once
        for batch_size in batch_sizes:
            lengths[name] = float(np.mean([len(t.split()) for t in decode_all(translate, batch_size)]))
    seconds = {(n, b): 0.0 for n in systems for b in batch_sizes}
    for _ in range(rounds):
        for batch_size in batch_sizes:
            for name, translate in systems.items():
                start = time.time()
                decode_all(translate, batch_size)
                seconds[name, batch_size] += time.time() - start
    return {k: v / (rounds * len(sentences)) for k, v in seconds.items()}, lengths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument(
        "--students", default="train,transformer", help="comma-separated train stages (default: train,transformer)"
    )
    parser.add_argument("--exports", default="", help="comma-separated SavedModels to time beside the students")
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,64")
    args = parser.parse_args()

    import tensorflow as tf

    from tfkd.pipeline import open_run

    spec, _, context = open_run(args.run_dir)
    sentences = context.task.corpus(context, "test").source[: args.sentences]
    systems, settings = student_systems(context, spec, [n for n in args.students.split(",") if n])
    exports = export_systems([p for p in args.exports.split(",") if p])
    systems.update(exports)
    settings.update({path: "its export's decode section" for path in exports})
    if not systems:
        raise SystemExit("bench_decoding: nothing to time: name --students or --exports")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    per_sentence, lengths = timed(systems, sentences, batch_sizes, args.rounds)
    names = list(systems)
    first = names[0]
    print(
        json.dumps(
            {
                "run": args.run_dir,
                "sentences": len(sentences),
                "rounds": args.rounds,
                "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, TensorFlow {tf.__version__}",
                "decoding": settings,
                "mean_output_words": {k: round(v, 2) for k, v in lengths.items()},
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
