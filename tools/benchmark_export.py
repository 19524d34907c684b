"""Export size, load time, and sentences/s through the exported graph vs in-process decoding.

    python tools/benchmark_export.py runs/baseline_multi30k --sentences 300 --rounds 3

Both paths translate the same sentences in the same batches, alternating round by round in
one process, so the ratio is robust to a noisy machine.
"""

import argparse
import json
import os
import tempfile
import time

import tensorflow as tf
import tensorflow_text  # noqa: F401

from tfkd.exporters.base import directory_size
from tfkd.exporters.saved_model import SavedModelExporter
from tfkd.pipeline import open_run
from tfkd.stages import load_student
from tfkd.tasks.translation.inference import translate_in_batches


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    spec, _, context = open_run(args.run_dir)
    student = load_student(context)
    translator = context.task.translator(context, student)
    sentences = context.task.corpus(context, "test").source[: args.sentences]
    with tempfile.TemporaryDirectory() as out:
        start = time.time()
        path = SavedModelExporter().export(context, student, os.path.join(out, "bench"), 1)
        export_seconds = time.time() - start
        size = directory_size(path)
        start = time.time()
        serve = tf.saved_model.load(path).signatures["serving_default"]
        load_seconds = time.time() - start

        def exported(batch):
            return serve(source=batch)

        # warm up both (tracing / first-call costs are not throughput)
        translate_in_batches(translator.translate, sentences[:8], translator.batch_size)
        translate_in_batches(exported, sentences[:8], translator.batch_size)
        times = {"in_process": 0.0, "exported": 0.0}
        outputs = {}
        for _ in range(args.rounds):
            for name, fn in (("in_process", translator.translate), ("exported", exported)):
                start = time.time()
                outputs[name], _ = translate_in_batches(fn, sentences, translator.batch_size)
                times[name] += time.time() - start
    rate = {k: args.rounds * len(sentences) / v for k, v in times.items()}
    print(
        json.dumps(
            {
                "export_mb": round(size / 1e6, 2),
                "export_seconds": round(export_seconds, 1),
                "load_seconds": round(load_seconds, 2),
                "sentences": len(sentences),
                "rounds": args.rounds,
                "sentences_per_second": {k: round(v, 1) for k, v in rate.items()},
                "exported_over_in_process": round(rate["exported"] / rate["in_process"], 3),
                "identical_outputs": outputs["in_process"] == outputs["exported"],
                "decode": spec.decode.model_dump(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
