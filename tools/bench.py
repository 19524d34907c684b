"""tfkd side by side with a PyTorch peer (Hugging Face ``MarianMTModel``) on the same CPU.

    tfkd run specs/quickstart.yaml --stages vocab            # the vocabularies the bench uses
    python tools/bench.py runs/quickstart --sections train,decode,export --xla

The student is the run's Transformer (its ``student`` section: layers, width, heads, feed-forward
size, tied output embeddings), built fresh; the peer is a ``MarianMTModel`` with the same
dimensions, the same two vocabularies (``decoder_vocab_size``, its own source and target
embeddings, the output tied to the target's), ReLU feed-forward layers and the same dropout
(keras-hub's blocks drop attention probabilities at ``dropout`` too: the peer's
``attention_dropout``). Each section runs
both in alternating rounds in one process and prints rates and ratios, with the machine and
thread counts, as JSON:

- ``train``: target tokens/s of a training step (Adam, label smoothing as the spec's) on the
  same batches: tfkd's own batches (length-bucketed under ``data.batch_tokens``), read before
  timing and fed to tfkd's ``fit`` and to the peer's forward/backward/step. tfkd is timed as it
  trains: with ``jit_compile`` off, and on (``--xla``: batches padded to their bucket's
  boundary, as ``train.jit_compile: true`` trains). Besides, the same tfkd step fed by the live
  input pipeline (shuffle, buckets, prefetch) against batches in memory: whether the pipeline
  ever starves the step.
- ``decode``: sentences/s at batch 64 and seconds per sentence at batch 1, greedy and beam 4,
  exactly ``--new-tokens`` tokens per sentence on both sides (tfkd decodes with an end token
  that never comes, the peer with ``min_new_tokens`` = ``max_new_tokens``), so the weights do
  not matter; with ``--xla`` the tfkd decoders compiled with XLA too.
- ``mask_predict`` (an AB-Net run: ``tfkd run specs/abnet_multi30k.yaml --stages vocab``):
  sentences/s of Mask-Predict (the spec's iterations and length candidates, every candidate
  ``--new-tokens`` long) against the peer's greedy and beam-4 ``generate()`` of as many tokens,
  the peer built with the AB-Net's BERT dimensions on both sides; with the decoder passes
  Mask-Predict actually ran (it stops early where an iteration changes nothing).
- ``export``: raw text in, text out, the spec's ``decode`` section run to the end token: tfkd's
  in-process Translator against its exported SavedModel loaded in the same process, with
  ``decode.jit_compile`` off (and on, with ``--xla``); the first pass (tracing and XLA
  compilation) apart from the timed rounds.
- ``deploy`` (a trained run): the SavedModel, in-process, CTranslate2 float32 and int8 and the
  peer on the run's test sentences, beam 4 and greedy, batch 64 and 1 (``tools/bench_deploy.py``);
  with ``--xla``, the in-process Translator and the SavedModel again with ``decode.jit_compile``.

``--precision float32,bfloat16`` times ``train`` and ``decode`` in both precisions (or one):
tfkd's student built under Keras' ``mixed_bfloat16`` (as ``train.precision`` and
``decode.precision: bfloat16`` build it), the peer under ``torch.autocast("cpu",
dtype=torch.bfloat16)``; each tfkd figure is over the peer's in the same precision, and
``bfloat16_over_float32`` gives each side's own speed-up. The train section adds a roofline:
the step's matmul FLOPs over its wall time against one output-layer-sized product in the same
framework and precision (``tools/roofline.py``).

The peer needs ``pip install -e .[bench]`` (torch, transformers).
"""

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_peer import _padded, _peer, _peer_generate, _tfkd_student  # noqa: E402


def _with_jit_compile(spec, context, setting):
    """``context`` as a stage whose ``train.jit_compile`` is ``setting`` sees it."""
    return context.with_spec(spec.model_copy(update={"train": spec.train.model_copy(update={"jit_compile": setting})}))


def _batches(spec, context, count, pad_to_bucket):
    data = iter(context.task.train_dataset(_with_jit_compile(spec, context, bool(pad_to_bucket)), "bench"))
    return [next(data) for _ in range(count)]


def _one_of_each_shape(batches):
    shapes = {}
    for batch in batches:
        shapes.setdefault(tuple(tuple(t.shape) for t in (*batch[0].values(), batch[1])), batch)
    return list(shapes.values())


def _target_tokens(batches, pad):
    return sum(int((b[1].numpy() != pad).sum()) for b in batches)


def _suffix(precision):
    """How a run's name says its precision: nothing for float32, ``_bfloat16`` otherwise."""
    return "" if precision == "float32" else f"_{precision}"


def _autocast(precision):
    """The peer's precision: ``torch.autocast`` to bfloat16 on the CPU, or nothing."""
    import contextlib

    import torch

    if precision == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _policy(precision):
    from tfkd.stages import INFERENCE_POLICIES, precision_policy

    return precision_policy(INFERENCE_POLICIES[precision])


def bench_train(spec, context, args):
    import keras
    import tensorflow as tf
    import torch
    from roofline import matmul_rate, transformer_step_flops

    from tfkd.data import SpecialIds
    from tfkd.stages import compile_and_build
    from tfkd.training.trainer import SupervisedTrainer

    train = spec.train
    special = SpecialIds.of(context.tokenizers().target)
    steps = args.steps
    plain = _batches(spec, context, steps * args.rounds + 5, False)
    padded = _batches(spec, context, steps * args.rounds + 5, True) if args.xla else None
    runs = {}  # name: (jit_compile, batches, precision)
    for precision in args.precisions:
        runs[f"tfkd{_suffix(precision)}"] = (False, plain, precision)
        if args.xla:
            runs[f"tfkd_xla{_suffix(precision)}"] = (True, padded, precision)
    trainers = {}
    # one more trainer, built last and never timed: the last trainer built runs up to a quarter
    # faster than an identical one built before it (tools/bench_trainer_steps.py)
    for name, (jit, batches, precision) in [*runs.items(), ("untimed", (False, plain, "float32"))]:
        keras.utils.set_random_seed(train.seed)
        with _policy(precision):  # mixed_bfloat16 for bfloat16, as train.precision builds it
            student = _tfkd_student(spec, context)
            trainer = SupervisedTrainer(student, context.task, label_smoothing=train.label_smoothing)
            # compiled as a train stage compiles it
            compile_and_build(trainer, keras.optimizers.Adam(1e-4), [batches[0]], jit_compile=jit)
        for batch in _one_of_each_shape(batches):  # trace (and compile) every shape before timing
            trainer.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False)
        trainers[name] = trainer
    del trainers["untimed"]

    peers = {}
    for precision in args.precisions:
        torch.manual_seed(train.seed)
        peer = _peer(spec, context.tokenizers(), special)
        peer.train()
        optimizer = torch.optim.Adam(peer.parameters(), lr=1e-4)
        peers[f"marian{_suffix(precision)}"] = (peer, optimizer, precision)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=train.label_smoothing)

    def peer_step(name, batch):
        peer, optimizer, precision = peers[name]
        inputs, target = batch
        source = torch.from_numpy(inputs["source_ids"].numpy().astype("int64"))
        decoder = torch.from_numpy(inputs["decoder_ids"].numpy().astype("int64"))
        labels = torch.from_numpy(target.numpy().astype("int64"))
        labels[labels == special.pad] = -100
        with _autocast(precision):  # the forward pass and the loss; backward follows autocast's casts
            logits = peer(
                input_ids=source,
                attention_mask=source != special.pad,
                decoder_input_ids=decoder,
                decoder_attention_mask=decoder != special.pad,
            ).logits
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for name in peers:
        for batch in plain[:5]:
            peer_step(name, batch)

    seconds = dict.fromkeys([*runs, *peers], 0.0)
    tokens = dict.fromkeys(seconds, 0)
    flops = dict.fromkeys(seconds, 0)
    target_vocab = context.tokenizers().target.vocabulary_size()
    # the same step fed by the live input pipeline (tokenized corpus -> shuffle -> buckets ->
    # prefetch), as a train stage feeds it, against batches already in memory
    pipeline = context.task.train_dataset(_with_jit_compile(spec, context, False), "bench")
    first = next(iter(runs))  # tfkd, or tfkd_bfloat16 alone
    trainers[first].fit(pipeline, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)  # every shape
    pipeline_seconds = 0.0
    for r in range(args.rounds):
        start = time.perf_counter()
        trainers[first].fit(pipeline, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
        pipeline_seconds += time.perf_counter() - start
        block = slice(5 + r * steps, 5 + (r + 1) * steps)
        for name, trainer in trainers.items():
            batches = runs[name][1][block]
            data = tf.data.Dataset.from_generator(
                lambda b=batches: iter(b),
                output_signature=(
                    {k: tf.TensorSpec([None, None], v.dtype) for k, v in batches[0][0].items()},
                    tf.TensorSpec([None, None], batches[0][1].dtype),
                ),
            )
            start = time.perf_counter()
            trainer.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
            seconds[name] += time.perf_counter() - start
            tokens[name] += _target_tokens(batches, special.pad)
            flops[name] += sum(transformer_step_flops(spec.student, b, target_vocab) for b in batches)
        for name in peers:
            start = time.perf_counter()
            for batch in plain[block]:
                peer_step(name, batch)
            seconds[name] += time.perf_counter() - start
            tokens[name] += _target_tokens(plain[block], special.pad)
            flops[name] += sum(transformer_step_flops(spec.student, b, target_vocab) for b in plain[block])
    rates = {k: tokens[k] / seconds[k] for k in seconds}
    # the matmul rate of each side in each precision, on the output layer's shape (the average
    # batch's target tokens x width x target vocabulary)
    rows = round(tokens[first] / (steps * args.rounds))
    peak = {
        (framework, precision): matmul_rate(framework, precision, rows, spec.student.hidden_dim, target_vocab)
        for framework in ("tensorflow", "torch")
        for precision in args.precisions
    }
    roofline = {}
    for name in seconds:
        precision = runs[name][2] if name in runs else peers[name][2]
        rate = flops[name] / seconds[name] / 1e9
        matmul = peak["tensorflow" if name in runs else "torch", precision]
        roofline[name] = {
            "step_matmul_gflops_per_second": round(rate, 1),
            "matmul_gflops_per_second": round(matmul, 1),
            "share_of_matmul_rate": round(rate / matmul, 3),
        }
    result = {
        "batches": f"{steps} x {args.rounds} of the run's training batches (data.batch_tokens "
        f"{spec.data.batch_tokens}, {rows} target tokens a batch on average)",
        "batch_shapes": {k: len(_one_of_each_shape(batches)) for k, (_, batches, _) in runs.items()},
        "target_tokens_per_second": {k: round(v, 1) for k, v in rates.items()},
        "tfkd_over_marian": {k: round(rates[k] / rates[f"marian{_suffix(runs[k][2])}"], 3) for k in runs},
        "roofline": roofline,
        "roofline_note": f"the step's matmul FLOPs (forward and backward, tools/roofline.py) over its wall time, "
        f"against one [{rows}, {spec.student.hidden_dim}] x [{spec.student.hidden_dim}, {target_vocab}] product "
        "in the same framework and precision",
        f"input_pipeline ({first})": {
            "ms_per_step_from_memory": round(1000 * seconds[first] / (steps * args.rounds), 1),
            "ms_per_step_from_the_pipeline": round(1000 * pipeline_seconds / (steps * args.rounds), 1),
            "pipeline_over_memory": round(pipeline_seconds / seconds[first], 3),
        },
    }
    if len(args.precisions) > 1:
        result["bfloat16_over_float32"] = {
            side: round(rates[f"{side}_bfloat16"] / rates[side], 3) for side in ("tfkd", "marian")
        }
    return result


def bench_decode(spec, context, args):
    import numpy as np
    import tensorflow as tf

    from tfkd import registry
    from tfkd.data import SpecialIds

    special = SpecialIds.of(context.tokenizers().target)
    never_ending = dataclasses.replace(special, eos=-1)  # decode exactly new_tokens tokens
    source_pad = SpecialIds.of(context.tokenizers().source).pad
    tokenized = context.task.tokenized(context, "test", "bench")
    sources = [np.asarray(s) for s in tokenized.source_ids.to_list()[: args.sentences]]
    students = {}
    for precision in args.precisions:  # the same weights, rebuilt as decode.precision rebuilds them
        with _policy(precision):
            students[precision] = _tfkd_student(spec, context)
            students[precision](context.task.student_inputs(context.tokenizers()))
        students[precision].set_weights(students[args.precisions[0]].get_weights())
    peer = _peer(spec, context.tokenizers(), special).eval()

    settings = {"greedy": ("greedy", {}), "beam4": ("beam", {"beam_size": 4, "length_penalty": 0.6})}
    functions = {}
    for name, (algorithm, options) in settings.items():
        decoder = registry.lookup("decoder", algorithm)
        for precision, student in students.items():
            for jit in [False, True] if args.xla else [False]:
                functions[f"tfkd {name}{' xla' if jit else ''}{_suffix(precision)}"] = tf.function(
                    lambda ids, d=decoder, o=options, m=student: d(m, ids, never_ending, args.new_tokens, **o),
                    jit_compile=jit,
                    reduce_retracing=True,
                )
    peers = {f"marian {name}{_suffix(p)}": (name, p) for name in settings for p in args.precisions}

    def run_tfkd(function, batch_size):
        for start in range(0, len(sources), batch_size):
            ids, _ = function(tf.constant(_padded(sources[start : start + batch_size], source_pad)))
        return ids.shape[-1]

    def run_peer(key, batch_size):
        name, precision = peers[key]
        beams = settings[name][1].get("beam_size", 1)
        with _autocast(precision):
            return _peer_generate(peer, sources, source_pad, beams, batch_size, args.new_tokens)

    lengths = {}
    for key, function in functions.items():  # warm up: trace (and compile) every shape
        for batch_size in args.batch_sizes:
            lengths[key] = run_tfkd(function, batch_size)
    for key in peers:
        lengths[key] = run_peer(key, args.batch_sizes[0])
    seconds = {}
    for _ in range(args.rounds):
        for batch_size in args.batch_sizes:
            for key, function in functions.items():
                start = time.perf_counter()
                run_tfkd(function, batch_size)
                seconds[key, batch_size] = seconds.get((key, batch_size), 0.0) + time.perf_counter() - start
            for key in peers:
                start = time.perf_counter()
                run_peer(key, batch_size)
                seconds[key, batch_size] = seconds.get((key, batch_size), 0.0) + time.perf_counter() - start
    per_sentence = {k: v / (args.rounds * len(sources)) for k, v in seconds.items()}
    result = {
        "sentences": len(sources),
        "new_tokens": lengths,
        "sentences_per_second": {f"{k} batch {b}": round(1 / v, 1) for (k, b), v in per_sentence.items()},
        "ms_per_sentence": {f"{k} batch {b}": round(1000 * v, 2) for (k, b), v in per_sentence.items()},
    }

    def peer_of(key):  # "tfkd beam4 xla_bfloat16" -> "marian beam4_bfloat16"
        precision = next((p for p in args.precisions if p != "float32" and key.endswith(_suffix(p))), "float32")
        return f"marian {key.split()[1].removesuffix(_suffix(precision))}{_suffix(precision)}"

    result["tfkd_over_marian"] = {
        f"{k} batch {b}": round(per_sentence[peer_of(k), b] / v, 3)
        for (k, b), v in per_sentence.items()
        if k.startswith("tfkd")
    }
    if len(args.precisions) > 1:
        result["bfloat16_over_float32"] = {
            f"{k} batch {b}": round(per_sentence[k.removesuffix("_bfloat16"), b] / v, 3)
            for (k, b), v in per_sentence.items()
            if k.endswith("_bfloat16")
        }
    return result


def bench_export(spec, context, args):
    """Raw text in, text out at ``decode.batch_size``, the spec's decoding (run to the end
    token): tfkd's in-process Translator against its exported SavedModel, each with
    ``decode.jit_compile`` off (and on, with ``--xla``); the first pass (tracing, XLA
    compilation) is reported apart."""
    import tempfile

    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from tfkd.exporters.saved_model import SavedModelExporter
    from tfkd.tasks.translation.inference import translate_in_batches

    sentences = context.task.corpus(context, "test").source[: args.sentences]
    student = _tfkd_student(spec, context)
    functions, first_pass = {}, {}
    with tempfile.TemporaryDirectory() as out:
        for jit in [False, True] if args.xla else [False]:
            view = context.with_spec(
                spec.model_copy(update={"decode": spec.decode.model_copy(update={"jit_compile": jit})})
            )
            translator = context.task.translator(view, student)
            path = SavedModelExporter().export(view, student, os.path.join(out, f"bench{int(jit)}"), 1)
            serve = tf.saved_model.load(path).signatures["serving_default"]
            suffix = " xla" if jit else ""
            functions["in-process" + suffix] = translator.translate
            functions["exported" + suffix] = lambda batch, s=serve: s(source=batch)
        outputs = {}
        for name, function in functions.items():
            start = time.perf_counter()
            outputs[name], _ = translate_in_batches(function, sentences, spec.decode.batch_size)
            first_pass[name] = time.perf_counter() - start
        seconds = dict.fromkeys(functions, 0.0)
        for _ in range(args.rounds):
            for name, function in functions.items():
                start = time.perf_counter()
                translate_in_batches(function, sentences, spec.decode.batch_size)
                seconds[name] += time.perf_counter() - start
    rates = {k: args.rounds * len(sentences) / v for k, v in seconds.items()}
    result = {
        "sentences": len(sentences),
        "batch_size": spec.decode.batch_size,
        "decoding": spec.decode.model_dump(mode="json", exclude={"jit_compile"}),
        "same_translations": {k: outputs[k] == outputs["in-process"] for k in outputs},
        "first_pass_seconds": {k: round(v, 2) for k, v in first_pass.items()},
        "sentences_per_second": {k: round(v, 1) for k, v in rates.items()},
        "exported_over_in_process": {"plain": round(rates["exported"] / rates["in-process"], 3)},
    }
    if args.xla:
        result["exported_over_in_process"]["xla"] = round(rates["exported xla"] / rates["in-process xla"], 3)
        result["xla_over_plain"] = {
            "in-process": round(rates["in-process xla"] / rates["in-process"], 3),
            "exported": round(rates["exported xla"] / rates["exported"], 3),
        }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run with its vocab stage done (tfkd run SPEC --stages vocab)")
    parser.add_argument("--sections", default="train,decode")
    parser.add_argument("--steps", type=int, default=30, help="training steps per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=128, help="test sentences decoded per round")
    parser.add_argument("--batch-sizes", default="64,1")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--xla", action="store_true", help="also time tfkd with XLA-compiled steps and decoders")
    parser.add_argument(
        "--precision",
        default="float32",
        help="float32, bfloat16 or both (float32,bfloat16): tfkd under Keras' mixed_bfloat16 and the peer "
        "under torch.autocast to bfloat16, each side against the other in the same precision",
    )
    parser.add_argument(
        "--keep",
        metavar="NAME",
        help="also write the report, the command and the versions to results/bench/NAME.json, where the pages' "
        "bench tables come from (python tools/results_data.py pages)",
    )
    args = parser.parse_args()
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.precisions = args.precision.split(",")
    if not set(args.precisions) <= {"float32", "bfloat16"}:
        parser.error(f"--precision {args.precision}: expected float32, bfloat16 or float32,bfloat16")

    # PyTorch and the peer's model first: loaded after TensorFlow, triton (which
    # transformers' generation code imports through torch._dynamo) crashes the process
    import torch
    import torch._dynamo  # noqa: F401  (generate() imports it, and with it triton, on first use)
    import transformers
    from transformers import MarianMTModel  # noqa: F401

    torch.set_num_threads(os.cpu_count())  # (a statement: the import sorter keeps TensorFlow below)
    import tensorflow as tf

    from tfkd.pipeline import open_run

    spec, _, context = open_run(args.run_dir)
    report = {
        "run": args.run_dir,
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}; TensorFlow {tf.__version__} "
        f"({tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()} intra-op threads), "
        f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads), transformers "
        f"{transformers.__version__}",
        "student": spec.student.model_dump(
            mode="json",
            include={
                "kind",
                "encoder_layers",
                "decoder_layers",
                "hidden_dim",
                "intermediate_dim",
                "num_heads",
                "tie_embeddings",
                "dropout",
            },
        ),
        "vocabularies": {
            "source": context.tokenizers().source.vocabulary_size(),
            "target": context.tokenizers().target.vocabulary_size(),
        },
    }
    sections = args.sections.split(",")
    if "train" in sections:
        report["train"] = bench_train(spec, context, args)
    if "decode" in sections:
        report["decode"] = bench_decode(spec, context, args)
    if "export" in sections:
        report["export"] = bench_export(spec, context, args)
    if "mask_predict" in sections:  # an AB-Net run: tools/bench_mask_predict.py
        from bench_mask_predict import bench_mask_predict

        report["mask_predict"] = bench_mask_predict(spec, context, args)
    if "deploy" in sections:  # a trained run: tools/bench_deploy.py
        from bench_deploy import bench_deploy

        report["deploy"] = bench_deploy(spec, context, args, _peer)
    print(json.dumps(report, indent=1))
    if args.keep:
        from results_data import keep_bench

        print(keep_bench(report, args.keep, "python tools/bench.py " + " ".join(sys.argv[1:])))


if __name__ == "__main__":
    main()
