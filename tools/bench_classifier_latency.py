"""Inference latency of a classification run's student against its fine-tuned teacher (the
LightPAFF measure, lightpaff Table 2): batch size 1, inputs of exactly ``--length`` tokens
(SST-2 validation sentences repeated to fill them), side by side in one process.

    python tools/bench_classifier_latency.py runs/lightpaff_sst2_cpu --students train,baseline

Both models run as ``tf.function``s of ``{"token_ids", "padding_mask"} -> logits`` (what the
export serves after tokenization); the first call of each is a warm-up and not timed. Rounds
alternate teacher and students, ``--calls`` calls each per round, so the ratios hold on a noisy
machine. Prints each model's parameters and median milliseconds per call over the rounds, and
the teacher's latency divided by each student's (the speed-up).
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
    parser.add_argument("--students", default="train", help="comma-separated train stages (default: train)")
    parser.add_argument("--length", type=int, default=128, help="tokens per input, [CLS] and [SEP] included")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from tfkd import data as data_lib
    from tfkd.methods.two_stage.teacher import load_finetuned_teacher
    from tfkd.pipeline import open_run
    from tfkd.stages import load_student

    spec, _, context = open_run(args.run_dir)
    tokenizer = context.tokenizers().text
    special = data_lib.SpecialIds.of(tokenizer)
    texts = context.task.corpus(context, "valid").texts[: args.batch_size]
    rows = []
    for ids in data_lib.tokenize_to_ragged(tokenizer, texts).to_list():
        body = (ids * (args.length // max(len(ids), 1) + 1))[: args.length - 2]
        rows.append([special.bos, *body, special.eos])
    inputs = {"token_ids": tf.constant(rows, tf.int32), "padding_mask": tf.ones([len(rows), args.length], tf.bool)}

    models = {"teacher": load_finetuned_teacher(context)}
    for name in args.students.split(","):
        own = spec.variant(name) if name in (spec.variants or {}) else spec
        models[name] = load_student(context.with_spec(own), name)
    calls = {name: tf.function(lambda x, m=model: m(x, training=False)) for name, model in models.items()}
    for call in calls.values():
        call(inputs).numpy()  # trace and warm up
    timings = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                call(inputs).numpy()
            timings[name].append((time.perf_counter() - start) / args.calls)
    teacher_ms = 1000 * float(np.median(timings["teacher"]))
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
        "batch_size": args.batch_size,
        "length": args.length,
        "rounds": args.rounds,
        "calls": args.calls,
        "models": {},
    }
    for name, model in models.items():
        ms = 1000 * float(np.median(timings[name]))
        report["models"][name] = {
            "parameters": int(model.count_params()),
            "ms": round(ms, 2),
            "speedup": round(teacher_ms / ms, 2),
        }
        print(f"{name:>12}: {model.count_params():>12,} parameters  {ms:8.2f} ms  x{teacher_ms / ms:5.2f}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
