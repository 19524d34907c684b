"""Training throughput of a run's trainers side by side: the supervised baseline, each variant
and the main method.

    python tools/bench_trainer_steps.py runs/quickstart --steps 25 --rounds 3
    python tools/bench_trainer_steps.py runs/masktask_multi30k --steps 20 --rounds 3
    python tools/bench_trainer_steps.py runs/abnet_multi30k --students train --all-trainable train

Every trainer is built from the run's spec as its train stage builds it (same student config,
vocabularies and data pipeline; a method's extra columns, such as the streamed soft-target
cache or the masked source, included) and trained in alternating blocks of ``--steps`` steps
in one process, so the ratios are robust to a noisy machine. Prints target tokens/s and
seconds per step of each, and each one's step time over the baseline's and over every other's.

Trainers are built in the order given, and the order shows: three identical MLE trainers
(``--students baseline,baseline,baseline``) measured 0.54, 0.52 and 0.42 s a step, the last
built the fastest. Read a ratio against that spread, or list the stages in both orders.

``STAGE@POLICY`` builds that trainer under a Keras dtype policy other than the spec's
``train.precision`` (``--students baseline,baseline@mixed_bfloat16``: the float32 step against
the bfloat16 one, side by side in one process).

``--all-trainable STAGE`` adds ``STAGE_all_trainable``: the same trainer with every weight of
its student trained (an adapter-only AB-Net against the full fine-tuning of the same model and
loss, the adapter method's "plain" step). Only the train stages' vocabularies and the teacher
stages they read need to be done.
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def stage_trainer(stage, spec, context, all_trainable=False):
    """``(trainer, batches)``: ``stage``'s trainer built, compiled (Adam) and traced as the train
    stage builds it, with an iterator over the stage's own training batches (a method's extra
    columns included). ``all_trainable``: every weight of the student trained."""
    import keras

    context = context.with_spec(stage.view(spec))
    own = context.spec
    keras.utils.set_random_seed(own.train.seed)
    task, method = context.task, stage.method
    data = iter(
        method.map_train_batches(
            context, method.train_dataset(context, stage.name, columns=method.train_columns(context, stage.name))
        )
    )
    student = task.build_student(own, context.tokenizers())
    if all_trainable:
        for layer in [student, *student._flatten_layers()]:
            layer.trainable = "pooled_dense" not in layer.name  # BERT's pooler: unused by a seq2seq student
    trainer = method.make_trainer(context, student)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-4))
    trainer(next(data)[0])
    trainer.optimizer.build(trainer.trainable_variables)
    fit(trainer, [next(data) for _ in range(5)])  # trace (once: every length is one signature) and warm
    return trainer, data


def fit(trainer, batches):
    """One ``fit`` over ``batches``, as a train stage trains: through a dataset whose signature
    leaves every length open, so that no batch shape traces the step again (``train_on_batch``
    traced new shapes inside the timed loop, which weighed on the larger steps most)."""
    import tensorflow as tf

    signature = tf.nest.map_structure(lambda t: tf.TensorSpec([None] * len(t.shape), t.dtype), batches[0])
    data = tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=signature)
    trainer.fit(data, epochs=1, steps_per_epoch=len(batches), verbose=0, shuffle=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--students", help="comma-separated train stages (default: baseline, the variants, train)")
    parser.add_argument(
        "--all-trainable", default="", help="comma-separated train stages to add with every student weight trained"
    )
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from tfkd.pipeline import open_run
    from tfkd.plan import plan_run
    from tfkd.stages import precision_policy

    spec, _, context = open_run(args.run_dir)
    stages = {s.name: s.make() for s in plan_run(spec) if s.role == "train"}
    listed = args.students.split(",") if args.students else list(stages)
    # a stage listed again is built again ("baseline#2"): identical trainers show the machine's
    # and the build order's share of a ratio
    names = [
        name if listed[:i].count(name) == 0 else f"{name}#{listed[:i].count(name) + 1}" for i, name in enumerate(listed)
    ]
    unfrozen = [n for n in args.all_trainable.split(",") if n]
    names += [f"{n}_all_trainable" for n in unfrozen]
    trainers = {}
    for name in [*names, names[0]]:  # the first again, last: built and never timed (see above)
        all_trainable = name.endswith("_all_trainable") and name[: -len("_all_trainable")] in unfrozen
        stage_name = name[: -len("_all_trainable")] if all_trainable else name.split("#")[0]
        stage_name, _, precision = stage_name.partition("@")
        with precision_policy(precision or spec.train.precision):
            trainer, data = stage_trainer(stages[stage_name], spec, context, all_trainable)
        if name not in trainers:
            trainers[name] = (trainer, data)

    seconds = dict.fromkeys(trainers, 0.0)
    tokens = dict.fromkeys(trainers, 0.0)
    for _ in range(args.rounds):
        for name, (trainer, data) in trainers.items():
            batches = [next(data) for _ in range(args.steps)]  # read outside the timed loop
            start = time.time()
            fit(trainer, batches)
            seconds[name] += time.time() - start
            tokens[name] += sum(
                float(tf.reduce_sum(tf.cast(b[1] != trainer.student.pad_id, tf.float32))) for b in batches
            )
    per_step = {name: seconds[name] / (args.steps * args.rounds) for name in trainers}
    first = names[0]
    print(
        json.dumps(
            {
                "run": args.run_dir,
                "steps": args.steps,
                "rounds": args.rounds,
                "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, TensorFlow {tf.__version__}",
                "trainers": {name: type(trainers[name][0]).__name__ for name in trainers},
                "trainable_parameters": {
                    name: sum(int(np.prod(v.shape)) for v in trainers[name][0].trainable_variables) for name in trainers
                },
                "target_tokens_per_second": {k: round(tokens[k] / seconds[k], 1) for k in trainers},
                "seconds_per_step": {k: round(v, 4) for k, v in per_step.items()},
                f"step_time_over_{first}": {k: round(v / per_step[first], 3) for k, v in per_step.items()},
                "step_time_ratios": {
                    f"{a}/{b}": round(per_step[a] / per_step[b], 3)
                    for a in trainers
                    for b in trainers
                    if a != b and names.index(a) > names.index(b)
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
