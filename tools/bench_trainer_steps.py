"""Training throughput of a run's method trainer against the supervised trainer, side by side.

    python tools/bench_trainer_steps.py runs/quickstart --steps 25 --rounds 3

Both trainers are built from the run's spec (same student config, vocabularies and data
pipeline; the method's trainer reads its extra columns, e.g. the streamed soft-target cache)
and trained in alternating blocks of ``--steps`` steps in one process, so the ratio is robust
to a noisy machine. Prints target tokens/s of each and their ratio.
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
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from tfkd import registry
    from tfkd.pipeline import open_run

    spec, _, context = open_run(args.run_dir)
    task = context.task
    methods = {"supervised": registry.lookup("method", registry.default("method")), spec.method: context.method}
    trainers = {}
    for name, method in methods.items():
        method_spec = spec if name == spec.method else spec.model_copy(
            update={"distill": method.spec_schema(method=name)})
        keras.utils.set_random_seed(spec.train.seed)
        data = iter(task.train_dataset(context, "train", columns=method.train_columns(context, "train")))
        student = task.build_student(spec, context.tokenizers())
        trainer = method.make_trainer(method_spec, task, student, context)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-4))
        trainer(next(data)[0])
        trainer.optimizer.build(trainer.trainable_variables)
        for _ in range(3):  # trace (batches of new shapes trace again; warm the common ones)
            trainer.train_on_batch(*next(data))
        trainers[name] = (trainer, data)

    seconds = dict.fromkeys(trainers, 0.0)
    tokens = dict.fromkeys(trainers, 0.0)
    for _ in range(args.rounds):
        for name, (trainer, data) in trainers.items():
            batches = [next(data) for _ in range(args.steps)]  # read outside the timed loop
            start = time.time()
            for batch in batches:
                logs = trainer.train_on_batch(*batch, return_dict=True)
            seconds[name] += time.time() - start
            tokens[name] += sum(float(tf.reduce_sum(tf.cast(b[1] != trainer.student.pad_id, tf.float32)))
                                for b in batches)
    rate = {name: tokens[name] / seconds[name] for name in trainers}
    print(json.dumps({
        "run": args.run_dir, "method": spec.method, "steps": args.steps, "rounds": args.rounds,
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, TensorFlow {tf.__version__}",
        "target_tokens_per_second": {k: round(v, 1) for k, v in rate.items()},
        "method_over_supervised": round(rate[spec.method] / rate["supervised"], 3),
        "last_logs": {k: round(float(v), 4) for k, v in logs.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
