"""Where a training step's time goes: TensorFlow's profiler over a few steps of a run's
student, its op times summed by what they compute.

    tfkd run specs/quickstart.yaml --stages vocab
    python tools/profile_step.py runs/quickstart --steps 20 [--xla] [--trace-dir DIR]
    python tools/profile_step.py runs/bench_masktask_cache --stage train    # a method's own step
    python tools/profile_step.py runs/quickstart --precision mixed_bfloat16  # the student built in bfloat16

The student and trainer are built as the run's ``baseline`` stage builds them (the plain MLE
step, label smoothing as the spec's), or with ``--stage`` as that train stage builds them (its
method's trainer and batches). Every batch shape is traced before profiling, then
``--steps`` steps of ``fit`` run under ``tf.profiler``. Printed as JSON: wall milliseconds
per step; op time per step by group (attention, feed-forward, layer norms, embeddings and the
output softmax, the loss, the optimizer update, the input pipeline, other ops), forward and
backward apart; the same time by the kind of op (matrix products, casts, random numbers,
gathers, reductions, layout, element-wise); the threads' idle time; the ops that took
longest. The trace stays in ``--trace-dir`` for TensorBoard's profile plugin.
"""

import argparse
import collections
import glob
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# (group, substrings of an op's full name, first match wins); "gradient_tape/" marks backward ops
GROUPS = [
    (
        "optimizer",
        (
            "adam/",
            "Adam/",
            "optimizer",
            "AssignAddVariableOp",
            "AssignSubVariableOp",
            "ResourceApplyAdam",
            "clip_by_global_norm",
            "global_norm",
        ),
    ),
    ("input pipeline", ("IteratorGetNext", "Iterator")),
    ("attention", ("self_attention", "cross_attention", "multi_head_attention", "attention")),
    ("feed-forward", ("feedforward", "intermediate_dense", "output_dense")),
    ("masked-LM head", ("mlm_head",)),
    ("layer norm", ("layer_norm", "LayerNorm", "layernorm", "encoder_norm", "decoder_norm")),
    ("embeddings and output softmax", ("embedding", "position_encoding", "output_projection")),
    ("loss", ("cross_entropy", "loss", "log_softmax", "LogSoftmax", "SparseSoftmax", "label_smooth", "terms")),
]


def group_of(name):
    for group, needles in GROUPS:
        if any(n in name for n in needles):
            return group
    return "other"


# (kind, op types): what an op computes, whatever layer it belongs to; the rest are "other
# element-wise" (adds, multiplies, activations, selects, comparisons)
KINDS = [
    ("matrix products", ("MatMul", "BatchMatMul", "Einsum", "Conv")),
    ("casts", ("Cast",)),
    ("random numbers", ("Random",)),
    ("gathers and scatters", ("Gather", "Scatter", "SegmentSum", "SegmentMax")),
    ("reductions and softmax", ("Sum", "Mean", "Max", "Min", "Prod", "Softmax", "LogSumExp", "ArgMax", "L2Loss")),
    (
        "layout (transpose, reshape, slice, concat)",
        (
            "Transpose",
            "Reshape",
            "Slice",
            "Concat",
            "Pad",
            "Tile",
            "Broadcast",
            "Pack",
            "Unpack",
            "Split",
            "Squeeze",
            "ExpandDims",
            "Identity",
        ),
    ),
    ("variables and optimizer state", ("VariableOp", "Assign")),
]


def kind_of(op_type):
    for kind, needles in KINDS:
        if any(n in op_type for n in needles):
            return kind
    return "other element-wise"


def op_times(xplane, types=None):
    """``{op full name: total self microseconds}`` from a profiler ``.xplane.pb``, by
    TensorFlow's own ``framework_op_stats`` tool; ``types``, a dict, is filled with each op's
    type (``MatMul``, ``Cast``, ...)."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data([xplane], "framework_op_stats")
    if not ok:
        raise SystemExit(f"profile_step: the profiler could not read {xplane}")
    tables = json.loads(data)
    table = tables[0] if isinstance(tables, list) else tables
    columns = [c["id"] for c in table["cols"]]
    name_col, self_col, type_col = columns.index("operation"), columns.index("total_self_time"), columns.index("type")
    host_col = columns.index("host_or_device") if "host_or_device" in columns else None
    times = collections.Counter()
    for row in table["rows"]:
        values = [c["v"] if c else None for c in row["c"]]
        if host_col is not None and values[host_col] not in ("Host", "Device", None):
            continue
        times[values[name_col]] += float(values[self_col])
        if types is not None:
            types[values[name_col]] = values[type_col]
    return times


def profiled(work, trace_dir):
    """Runs ``work()`` under TensorFlow's profiler (its trace written to ``trace_dir``):
    ``(wall seconds, {op: self microseconds}, {op: op type})``; the threads' time without an
    op is under ``"IDLE"``."""
    import tensorflow as tf

    tf.profiler.experimental.start(trace_dir)
    start = time.perf_counter()
    work()
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    (xplane,) = glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "*.xplane.pb"))[-1:]
    types = {}
    return wall, op_times(xplane, types), types


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run with its vocab stage done")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--xla", action="store_true", help="profile the XLA-compiled step (bucket-padded batches)")
    parser.add_argument(
        "--stage",
        help="profile this train stage's own step (its trainer, batches and extra "
        "columns, as tools/bench_trainer_steps.py builds it) instead of the plain MLE step",
    )
    parser.add_argument(
        "--precision",
        choices=["float32", "mixed_bfloat16", "mixed_float16"],
        help="the Keras dtype policy the student is built under (default: the spec's train.precision)",
    )
    parser.add_argument("--trace-dir", help="where the profile goes (default: a temporary folder)")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from tfkd.data import SpecialIds
    from tfkd.pipeline import open_run
    from tfkd.stages import compile_and_build, precision_policy
    from tfkd.training.trainer import SupervisedTrainer

    spec, _, context = open_run(args.run_dir)
    # --xla: the batches padded and the plain step compiled as under train.jit_compile: true
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"jit_compile": args.xla})})
    context = context.with_spec(spec)
    keras.utils.set_random_seed(spec.train.seed)
    with precision_policy(args.precision or spec.train.precision):
        if args.stage:
            from bench_trainer_steps import stage_trainer

            from tfkd.plan import plan_run

            stages = {s.name: s.make() for s in plan_run(spec)}
            if args.stage not in stages:
                raise SystemExit(f"profile_step: no stage {args.stage} in {args.run_dir} (stages: {', '.join(stages)})")
            trainer, data = stage_trainer(stages[args.stage], spec, context)
        else:
            data = iter(context.task.train_dataset(context, "profile"))
            trainer = SupervisedTrainer(
                context.task.build_student(spec, context.tokenizers()),
                context.task,
                label_smoothing=spec.train.label_smoothing,
            )
        batches = [next(data) for _ in range(args.steps + 40)]
        if not args.stage:
            compile_and_build(trainer, keras.optimizers.Adam(1e-4), [batches[0]], jit_compile=args.xla)
    signature = tf.nest.map_structure(lambda t: tf.TensorSpec([None] * len(t.shape), t.dtype), batches[0])

    def fit(part):
        ds = tf.data.Dataset.from_generator(lambda: iter(part), output_signature=signature)
        trainer.fit(ds, epochs=1, steps_per_epoch=len(part), verbose=0, shuffle=False)

    fit(batches[:40])  # trace (and compile) the shapes, warm the caches
    timed = batches[40:]
    trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="tfkd-profile-")
    wall, times, types = profiled(lambda: fit(timed), trace_dir)
    idle = times.pop("IDLE", 0.0)  # the threads' time without an op
    kinds = collections.Counter()
    for name, micros in times.items():
        kinds[kind_of(types.get(name, ""))] += micros
    groups = collections.Counter()
    for name, micros in times.items():
        direction = "backward" if "gradient_tape/" in name else "forward"
        group = group_of(name)
        key = group if group in ("optimizer", "input pipeline") else f"{group} ({direction})"
        groups[key] += micros
    steps = len(timed)
    op_total = sum(groups.values())
    pad = SpecialIds.of(context.tokenizers().target).pad
    tokens = sum(int((b[1].numpy() != pad).sum()) for b in timed)
    print(
        json.dumps(
            {
                "run": args.run_dir,
                "stage": args.stage or "the plain MLE step",
                "trainer": type(trainer).__name__,
                "steps": steps,
                "xla": args.xla,
                "precision": args.precision or spec.train.precision,
                "trace": trace_dir,
                "wall_ms_per_step": round(1000 * wall / steps, 2),
                "target_tokens_per_second": round(tokens / wall, 1),
                "op_ms_per_step": round(op_total / 1000 / steps, 2),
                "op_ms_per_step_by_group": {k: round(v / 1000 / steps, 2) for k, v in groups.most_common()},
                "op_share_by_group": {k: round(v / op_total, 3) for k, v in groups.most_common()},
                # the same time by what the ops compute: how much of the step the matrix
                # products are (what a faster precision speeds up) and how much is the rest
                "op_ms_per_step_by_kind": {k: round(v / 1000 / steps, 2) for k, v in kinds.most_common()},
                "idle_thread_ms_per_step": round(idle / 1000 / steps, 2),
                "note": "op and idle times are summed over the threads that ran ops (the intra-op pool and the "
                "executor's), so together they exceed the wall time",
                "top_ops_ms_per_step": {k: round(v / 1000 / steps, 2) for k, v in times.most_common(15)},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
