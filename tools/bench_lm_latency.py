"""Generation latency of a language-model run's student against its fine-tuned teacher (the
LightPAFF measure, lightpaff Table 4): batch size 1, exactly ``--new-tokens`` tokens generated
greedily after a WikiText-2 test prompt of ``--prompt-tokens`` tokens, side by side in one
process.

    python tools/bench_lm_latency.py runs/lightpaff_gpt2_wikitext2_cpu --students train,baseline

Each model runs through the export's graph (:class:`tfkd.tasks.language_model.export.TextLM`:
tokenization, keras-hub's key/value-cached greedy sampler, detokenization), never stopping at
``<|endoftext|>``, so every call generates the same number of tokens. The first call of each is
a warm-up and not timed; rounds alternate teacher and students, ``--calls`` calls each per
round, so the ratios hold on a noisy machine. Prints each model's parameters, the median
milliseconds per generation over the rounds, and the teacher's latency divided by each
student's (the speed-up).
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--students", default="train", help="comma-separated train stages (default: train)")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()

    import keras_hub
    import numpy as np
    import tensorflow as tf

    from tfkd import data as data_lib
    from tfkd.methods.two_stage.teacher import load_finetuned_teacher
    from tfkd.pipeline import open_run
    from tfkd.stages import load_student
    from tfkd.tasks.language_model.export import TextLM

    spec, _, context = open_run(args.run_dir)
    tokenizer = context.tokenizers().text
    lines = [line for line in context.task.text(context, "test").lines if len(line.split()) > args.prompt_tokens]
    ids = data_lib.tokenize_to_ragged(tokenizer, lines[:1]).to_list()[0][: args.prompt_tokens]
    prompt = tf.function(tokenizer.detokenize)(tf.constant([ids], tf.int32))

    models = {"teacher": load_finetuned_teacher(context)}
    for name in args.students.split(","):
        own = spec.variant(name) if name in (spec.variants or {}) else spec
        models[name] = load_student(context.with_spec(own), name)
    generators = {
        name: TextLM(model, tokenizer, keras_hub.samplers.GreedySampler(), args.new_tokens, stop_at_end=False)
        for name, model in models.items()
    }
    for generator in generators.values():
        generator.generate(prompt)["continuation"].numpy()  # trace and warm up
    timings = {name: [] for name in generators}
    for _ in range(args.rounds):
        for name, generator in generators.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                generator.generate(prompt)["continuation"].numpy()
            timings[name].append((time.perf_counter() - start) / args.calls * 1000)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; TensorFlow "
        f"{tf.__version__}; batch 1, prompt {len(ids)} tokens, {args.new_tokens} tokens generated greedily; "
        f"median of {args.rounds} alternating rounds of {args.calls} calls"
    )
    teacher_ms = float(np.median(timings["teacher"]))
    for name, model in models.items():
        ms = float(np.median(timings[name]))
        print(f"{name:>12}: {model.count_params():>12,} parameters  {ms:8.2f} ms  speed-up {teacher_ms / ms:5.2f}x")


if __name__ == "__main__":
    main()
