"""``python tools/bench.py RUN --sections deploy``: the run's trained translation student as it
would be deployed, side by side in one process on the run's real test sentences, run to the end
token, beam 4 and greedy, batch 64 and batch 1:

- tfkd in-process (the ``Translator`` graph evaluation uses),
- tfkd's SavedModel (exported here with the same decoding, loaded in this process),
- with ``--xla``, both again with ``decode.jit_compile: true`` (the decoder one XLA program per
  batch size and source bucket; each system's warm-up pass, which compiles them, is reported
  apart as ``first_pass_seconds``),
- the same SavedModel of the student quantized by Keras (``model.quantize("int8")``: int8
  Dense/EinsumDense kernels, activations quantized on the fly),
- tfkd's CTranslate2 export, float32 and int8 (``--format ctranslate2 --quantization int8``),
- the Hugging Face peer (``MarianMTModel`` of the same dimensions and vocabularies, random
  weights: it cannot know when to stop, so each batch generates as many tokens as the longest
  of the SavedModel's translations in that batch, its end token included: the same decoder
  steps as tfkd's batch ran).

Each system is timed in a process of its own that loads it, warms it up and runs the rounds:
in one process, the OpenMP threads of CTranslate2 and PyTorch and TensorFlow's thread pools
slow each other (CTranslate2 at batch 1 measured 63 ms a sentence there against 6-10 ms alone).

Each system's translations are scored (sacreBLEU, as the run scores) and compared with the
SavedModel's line by line; every CTranslate2 export is also scored on the whole test set against
the run's own evaluation (``evaluate/test.hyp``). Sizes on disk, and resident memory of a fresh
process that loaded the export and translated one line.

The anchor (``anchor``): tfkd's CTranslate2 export against the model CTranslate2's own converter
makes of a Hugging Face Marian model of the student's dimensions (random weights, one shared
vocabulary of the target's size), float32 and int8, each timed in a process of its own that
loads CTranslate2 alone, with the threads tfkd's translator takes for such weights: the same
random source rows (15 tokens), exactly ``--new-tokens`` target tokens each
(``min_decoding_length`` = ``max_decoding_length``), beam 4 and greedy, batch 64 and batch 1
(``max_batch_size``: one call over all rows).
"""

import os
import subprocess
import sys
import tempfile
import types

# resident memory of a process that loads an export and translates one line (kept out of the
# benchmark's own process, whose memory holds everything else)
# (VmHWM: ru_maxrss would start from the benchmark's own peak, which a child inherits)
LOADED_MEMORY = r"""
import json, sys
import tfkd
model = tfkd.load(sys.argv[1])
model(["Ein Mann fährt Fahrrad."])
print(json.dumps(next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))))
"""


# the anchor's timing of one CTranslate2 model, in a process with CTranslate2 alone (no
# TensorFlow, no PyTorch, no other model's OpenMP threads)
ANCHOR_TIMING = r"""
import json, sys, time
import ctranslate2
job = json.loads(sys.argv[1])
model = ctranslate2.Translator(job["path"], device="cpu", intra_threads=job["threads"], inter_threads=1)
rows, tokens, result = job["rows"], job["tokens"], {}
for batch, beam in ((64, 4), (64, 1), (1, 4), (1, 1)):
    count = len(rows) if batch > 1 else 16
    def run():
        model.translate_batch(rows[:count], max_batch_size=batch, beam_size=beam,
                              min_decoding_length=tokens, max_decoding_length=tokens)
    run()  # warm-up
    start = time.perf_counter()
    for _ in range(job["rounds"]):
        run()
    result[f"{'beam 4' if beam > 1 else 'greedy'}, batch {batch}"] = round(
        job["rounds"] * count / (time.perf_counter() - start), 1)
print(json.dumps(result))
"""


# one system's timing, in a process of its own (see the module docstring)
SYSTEM_TIMING = r"""
import json, sys, time
job = json.load(open(sys.argv[1]))
if job["kind"] == "peer":  # PyTorch before TensorFlow (see tools/bench.py)
    import torch
    import torch._dynamo
    from transformers import MarianConfig, MarianMTModel
    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    sys.path.insert(0, job["tools"])
    from bench import _peer_generate
    peer = MarianMTModel(MarianConfig(**job["config"])).eval()
    def run():
        for rows, new_tokens in job["batches"]:
            _peer_generate(peer, rows, peer.config.pad_token_id, job["beam_size"], len(rows), new_tokens)
else:
    import tensorflow as tf
    import tensorflow_text
    from tfkd.tasks.translation.inference import translate_in_batches
    if job["kind"] == "saved_model":
        serve = tf.saved_model.load(job["path"]).signatures["serving_default"]
        translate = lambda batch: serve(source=batch)
    elif job["kind"] == "ctranslate2":
        from tfkd.exporters.ctranslate2.translator import CTranslate2Translator
        translator = CTranslate2Translator(job["path"])  # the threads tfkd picks
        translator.beam_size, translator.length_penalty = job["beam_size"], job["length_penalty"]
        translate = translator._translate
    else:  # the run's student in-process, the Translator evaluation uses
        from tfkd.pipeline import open_run
        from tfkd.stages import load_student
        spec, _, context = open_run(job["path"])
        view = context.with_spec(spec.model_copy(update={"decode": spec.decode.model_copy(update=job["decode"])}))
        translate = view.task.translator(view, load_student(view)).translate
    run = lambda: translate_in_batches(translate, job["inputs"], job["batch_size"])
start = time.perf_counter()
run()  # warm-up: tracing, first calls (with XLA, each shape's compilation)
first = time.perf_counter() - start
start = time.perf_counter()
for _ in range(job["rounds"]):
    run()
print(json.dumps({"seconds": time.perf_counter() - start, "first_pass": first}))
"""


def bench_deploy(spec, context, args, make_peer):
    """The ``deploy`` section's dict (see the module docstring); ``make_peer`` is
    tools/bench.py's (its ``_peer_generate`` drives the peer in the timing process)."""
    import tensorflow_text  # noqa: F401

    from tfkd.exporters.base import directory_size
    from tfkd.exporters.ctranslate2 import CTranslate2Exporter
    from tfkd.stages import load_student
    from tfkd.tasks.translation.inference import translate_in_batches

    student = load_student(context)
    corpus = context.task.corpus(context, "test")
    sentences = corpus.source[: args.sentences]
    references = corpus.target[: args.sentences]
    tokenizers = context.tokenizers()
    result = {
        "sentences": len(sentences),
        "batch_1_sentences": min(32, len(sentences)),
        "beam_size": spec.decode.beam_size,
        "algorithms": {},
    }
    with tempfile.TemporaryDirectory() as out:
        exports, systems = {}, {}
        for version, quantization in enumerate(("float32", "int8"), 1):
            view = _with(context, spec, export={"format": "ctranslate2", "quantization": quantization})
            exports[f"ctranslate2 {quantization}"] = CTranslate2Exporter().export(view, student, f"{out}/ct2", version)
        # Keras' dynamic-range int8 (int8 Dense/EinsumDense kernels with per-channel scales,
        # activations quantized on the fly), exported as a SavedModel like the float one
        quantized = load_student(context)
        quantized.quantize("int8")
        students = {"float32": student, "int8": quantized}
        for algorithm in ("beam", "greedy"):
            systems[algorithm] = _systems(context, spec, args, algorithm, students, exports, out)
        whole_test = _whole_test_set(context, spec, corpus, exports, translate_in_batches)
        # the peer's sizes from the trained student (a spec may leave them to the defaults)
        sizes = ("encoder_layers", "decoder_layers", "hidden_dim", "intermediate_dim", "num_heads", "dropout")
        shape = types.SimpleNamespace(**{k: getattr(student, k) for k in sizes}, tie_embeddings=student.tie_embeddings)
        peer = make_peer(types.SimpleNamespace(student=shape), tokenizers, _special(tokenizers.target))
        peer_job = {
            "kind": "peer",
            "config": peer.config.to_dict(),
            "tools": os.path.dirname(os.path.abspath(__file__)),
        }
        for algorithm, functions in systems.items():
            result["algorithms"][algorithm] = _time_algorithm(
                spec, tokenizers, functions, peer_job, algorithm, sentences, references, args, translate_in_batches
            )
        result["whole_test_set"] = whole_test
        result["anchor"] = _anchor(shape, tokenizers, exports, args)
        result["size_mb"] = {k: round(directory_size(v) / 1e6, 1) for k, v in exports.items()}
        result["loaded_memory_mb"] = {k: round(_loaded_memory(v), 1) for k, v in exports.items()}
    return result


def _systems(context, spec, args, algorithm, students, exports, out):
    """``{name: (translate function in this process, the job that times it in its own)}`` of
    one algorithm: the in-process Translator and the SavedModels of ``students`` (float32,
    Keras int8), exported here into ``out`` and added to ``exports``; with ``--xla``, the
    Translator and the float32 SavedModel again with ``decode.jit_compile``; the CTranslate2
    exports already in ``exports``."""
    import tensorflow as tf

    from tfkd.exporters.ctranslate2.translator import CTranslate2Translator
    from tfkd.exporters.saved_model import SavedModelExporter

    beams = spec.decode.beam_size if algorithm == "beam" else 1
    settings = {"beam_size": beams, "length_penalty": spec.decode.length_penalty if beams > 1 else 0.0}
    systems = {}
    for jit in (False, True) if args.xla else (False,):
        decode = {"algorithm": algorithm, "jit_compile": jit}
        view, suffix = _with(context, spec, decode=decode), " xla" if jit else ""
        in_process = {"kind": "in_process", "decode": decode, "path": args.run_dir}
        systems[f"in-process{suffix}"] = (context.task.translator(view, students["float32"]).translate, in_process)
        models = [("saved_model", students["float32"])] + ([] if jit else [("saved_model int8", students["int8"])])
        for name, model in models:
            name += suffix
            path = SavedModelExporter().export(view, model, f"{out}/{name.replace(' ', '_')}_{algorithm}", 1)
            exports.setdefault(name, path)
            serve = tf.saved_model.load(path).signatures["serving_default"]
            systems[name] = (lambda batch, s=serve: s(source=batch), {"kind": "saved_model", "path": path})
    for name in ("ctranslate2 float32", "ctranslate2 int8"):
        translator = CTranslate2Translator(exports[name])
        translator.beam_size, translator.length_penalty = settings["beam_size"], settings["length_penalty"]
        systems[name] = (translator._translate, {"kind": "ctranslate2", "path": exports[name], **settings})
    return systems


def _anchor(shape, tokenizers, exports, args):
    """tfkd's CTranslate2 exports against CTranslate2's own conversion of a Marian model of the
    same dimensions (see the module docstring): sentences/s and tfkd over the anchor."""
    import json

    import numpy as np
    import torch
    from ctranslate2.converters.converter import Converter
    from ctranslate2.converters.transformers import MarianMTLoader
    from transformers import MarianConfig, MarianMTModel

    from tfkd.exporters.ctranslate2.folder import default_threads
    from tfkd.exporters.ctranslate2.transformer import vocabulary

    size = tokenizers.target.vocabulary_size() + 1  # + <pad>, which CTranslate2's loader removes
    torch.manual_seed(0)
    marian = MarianMTModel(
        MarianConfig(
            vocab_size=size,
            decoder_vocab_size=size,
            d_model=shape.hidden_dim,
            encoder_layers=shape.encoder_layers,
            decoder_layers=shape.decoder_layers,
            encoder_attention_heads=shape.num_heads,
            decoder_attention_heads=shape.num_heads,
            encoder_ffn_dim=shape.intermediate_dim,
            decoder_ffn_dim=shape.intermediate_dim,
            activation_function="relu",
            max_position_embeddings=512,
            pad_token_id=size - 1,
            eos_token_id=0,
            decoder_start_token_id=size - 1,
            share_encoder_decoder_embeddings=True,
            tie_word_embeddings=True,
        )
    ).eval()
    marian_tokens = ["</s>", "<unk>", *(f"t{i}" for i in range(2, size - 1)), "<pad>"]

    class Loader(MarianMTLoader):  # its vocabulary and special tokens without a tokenizer
        def get_vocabulary(self, model, tokenizer):
            return marian_tokens[:-1]

        def set_config(self, config, model, tokenizer):
            config.eos_token, config.unk_token, config.decoder_start_token = "</s>", "<unk>", "</s>"

    class MarianConverter(Converter):
        def _load(self):
            return Loader()(marian, None)

    rng = np.random.default_rng(0)
    source = vocabulary(tokenizers.source)
    plain = [t for t in source if not (t.startswith("[") and t.endswith("]"))]
    rows = {
        "tfkd": [list(rng.choice(plain, 15)) for _ in range(args.sentences)],  # as long as the anchor's with its </s>
        "anchor": [[*(marian_tokens[i] for i in rng.integers(2, size - 1, 14)), "</s>"] for _ in range(args.sentences)],
    }
    with tempfile.TemporaryDirectory() as out:
        models = {}
        for quantization in ("float32", "int8"):
            MarianConverter().convert(f"{out}/{quantization}", quantization=quantization)
            models[f"anchor {quantization}"] = f"{out}/{quantization}"
            models[f"tfkd {quantization}"] = exports[f"ctranslate2 {quantization}"]
        rates = {}
        for name, path in models.items():
            weights = name.split()[1]
            job = {"path": path, "rows": rows[name.split()[0]], "tokens": args.new_tokens, "rounds": args.rounds}
            job["threads"] = default_threads(weights)  # as tfkd's translator runs either
            done = subprocess.run(
                [sys.executable, "-c", ANCHOR_TIMING, json.dumps(job)], capture_output=True, text=True, timeout=3600
            )
            if done.returncode:
                raise RuntimeError(f"the anchor's timing failed: {done.stderr.strip().splitlines()[-1:]}")
            for setting, rate in json.loads(done.stdout.strip().splitlines()[-1]).items():
                rates.setdefault(setting, {})[name] = rate
    return {
        setting: {
            "sentences_per_second": rate,
            "tfkd_over_anchor": {q: round(rate[f"tfkd {q}"] / rate[f"anchor {q}"], 2) for q in ("float32", "int8")},
        }
        for setting, rate in rates.items()
    }


def _with(context, spec, **sections):
    update = {name: getattr(spec, name).model_copy(update=values) for name, values in sections.items()}
    return context.with_spec(spec.model_copy(update=update))


def _special(tokenizer):
    from tfkd.data import SpecialIds

    return SpecialIds.of(tokenizer)


def _bleu(spec, hypotheses, references):
    from tfkd.tasks.translation.metrics import corpus_bleu

    return round(corpus_bleu(hypotheses, references, spec.evaluate.lowercase, spec.evaluate.tokenize)[0].score, 2)


def _whole_test_set(context, spec, corpus, exports, translate_in_batches):
    """The int8 SavedModel and each CTranslate2 export on the whole test set: BLEU, and lines
    equal to the run's own evaluation (the Translator's, which the float SavedModel gives too)."""
    from tfkd.exporters.ctranslate2.translator import CTranslate2Translator

    evaluated = os.path.join(context.runner.stage_dir("evaluate"), "test.hyp")
    with open(evaluated, encoding="utf-8") as f:
        run_lines = f.read().splitlines()
    scores = {"run (evaluate stage)": {"bleu": _bleu(spec, run_lines, corpus.target)}}
    import tensorflow as tf

    for name in ("saved_model int8", "ctranslate2 float32", "ctranslate2 int8"):
        if name.startswith("saved_model"):
            serve = tf.saved_model.load(exports[name]).signatures["serving_default"]
            translate = lambda batch, s=serve: s(source=batch)  # noqa: E731
        else:
            translate = CTranslate2Translator(exports[name])._translate
        lines, _ = translate_in_batches(translate, corpus.source, spec.decode.batch_size)
        scores[name] = {
            "bleu": _bleu(spec, lines, corpus.target),
            "lines_equal_to_the_run": sum(a == b for a, b in zip(lines, run_lines)),
            "lines": len(lines),
        }
    return scores


def _time_algorithm(
    spec, tokenizers, functions, peer_job, algorithm, sentences, references, args, translate_in_batches
):
    import numpy as np

    from tfkd.data import tokenize_to_ragged

    rows = {}
    for batch_size in (64, 1):
        inputs = sentences if batch_size > 1 else sentences[:32]
        outputs = {name: translate_in_batches(f, inputs, batch_size)[0] for name, (f, _) in functions.items()}
        # the peer's work per batch: the SavedModel's longest translation of the batch, + end token
        order = np.argsort([len(s.split()) for s in inputs], kind="stable")
        lengths = [len(ids) for ids in tokenize_to_ragged(tokenizers.target, outputs["saved_model"]).to_list()]
        source_ids = tokenize_to_ragged(tokenizers.source, inputs).to_list()
        peer_batches = [
            (
                [source_ids[j][: spec.data.max_tokens] or [1] for j in order[i : i + batch_size]],
                max(lengths[j] for j in order[i : i + batch_size]) + 1,
            )
            for i in range(0, len(inputs), batch_size)
        ]
        beams = spec.decode.beam_size if algorithm == "beam" else 1
        jobs = {name: job for name, (_, job) in functions.items()}
        jobs["hugging face peer"] = dict(peer_job, batches=peer_batches, beam_size=beams)
        common = {"inputs": inputs, "batch_size": batch_size, "rounds": args.rounds, "threads": os.cpu_count()}
        timed = {name: _timed_in_a_process(dict(common, **job)) for name, job in jobs.items()}
        rate = {k: args.rounds * len(inputs) / v["seconds"] for k, v in timed.items()}
        rows[f"batch {batch_size}"] = {
            "sentences_per_second": {k: round(v, 1) for k, v in rate.items()},
            # the warm-up pass over the same inputs: tracing, first calls, XLA's compilations
            "first_pass_seconds": {k: round(v["first_pass"], 1) for k, v in timed.items()},
            "over_saved_model": {k: round(v / rate["saved_model"], 2) for k, v in rate.items()},
            "lines_equal_to_saved_model": {
                k: sum(a == b for a, b in zip(v, outputs["saved_model"])) for k, v in outputs.items()
            },
            "bleu": {k: _bleu(spec, v, references[: len(inputs)]) for k, v in outputs.items()},
        }
    return rows


def _timed_in_a_process(job):
    """``{"seconds": ..., "first_pass": ...}``: ``job["rounds"]`` rounds of one system after its
    warm-up pass, and that pass, timed by ``SYSTEM_TIMING`` in a process of its own."""
    import json

    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(job, f)
        f.flush()
        done = subprocess.run(
            [sys.executable, "-c", SYSTEM_TIMING, f.name], capture_output=True, text=True, timeout=7200
        )
    if done.returncode:
        raise RuntimeError(f"timing {job['kind']} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _loaded_memory(path):
    out = subprocess.run([sys.executable, "-c", LOADED_MEMORY, path], capture_output=True, text=True, timeout=600)
    if out.returncode:
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def deploy_tables(kept):
    """Markdown tables of a kept ``--sections deploy`` report (``results/bench/NAME.json``, as
    ``tools/bench.py --keep NAME`` writes it), each followed by the command and versions that
    made it: ``speed`` (every system, beam and greedy, batch 64 and 1), ``first_pass`` (each
    system's warm-up pass over the same inputs: tracing, first calls, XLA's compilations), ``test_set`` (BLEU on
    the whole test set, lines equal to the run's, sizes, memory), ``anchor`` (tfkd's
    CTranslate2 exports against CTranslate2's own converter) and ``summary`` (the SavedModel and
    the CTranslate2 exports with beam search, their BLEU and size)."""
    report, deploy = kept["report"], kept["report"]["deploy"]
    beam = deploy.get("beam_size", 4)
    settings = [(a, b) for a in ("beam", "greedy") for b in ("batch 64", "batch 1")]
    header = [f"{f'beam {beam}' if a == 'beam' else a}, {b}" for a, b in settings]
    systems = list(deploy["algorithms"]["beam"]["batch 64"]["sentences_per_second"])
    speed = [f"| sentences/s (over the SavedModel) | {' | '.join(header)} |", "|---" * (len(header) + 1) + "|"]
    speed += [f"| {system} | {_rates(deploy, system, settings)} |" for system in systems]
    summary = ["| export | " + " | ".join(header[:2]) + " | test BLEU | size |", "|---|---|---|---|---|"]
    for name in [n for n in ("saved_model", "ctranslate2 float32", "ctranslate2 int8") if n in systems]:
        bleu = _whole_test_set_scores(deploy, name)["bleu"]
        summary.append(f"| {name} | {_rates(deploy, name, settings[:2])} | {bleu:.2f} | {deploy['size_mb'][name]} MB |")
    made = (
        f"\n\n`{kept['command']}` at tfkd {kept['versions']['tfkd_commit'][:7]}; {report['machine']}; "
        f"{deploy['sentences']} test sentences (batch 1: the first {deploy['batch_1_sentences']})\n"
    )
    tables = {
        "speed": speed,
        "first_pass": _first_pass_table(deploy, systems, settings, header),
        "test_set": _test_set_table(deploy),
        "anchor": _anchor_table(deploy),
        "summary": summary,
    }
    return {name: "\n".join(lines) + made for name, lines in tables.items()}


def _rates(deploy, system, settings):
    """``rate (ratio to the SavedModel)`` cells of ``system`` at ``settings``."""
    cells = []
    for algorithm, batch in settings:
        row = deploy["algorithms"][algorithm][batch]
        cells.append(f"{row['sentences_per_second'][system]:,} ({row['over_saved_model'][system]:.2f})")
    return " | ".join(cells)


def _first_pass_table(deploy, systems, settings, header):
    """Seconds of each system's warm-up pass over the timed inputs (tracing, first calls, XLA's
    compilations), where the report has them."""
    if "first_pass_seconds" not in deploy["algorithms"]["beam"]["batch 64"]:
        return ["(this report predates the warm-up pass's timing)"]
    lines = [f"| first pass, seconds | {' | '.join(header)} |", "|---" * (len(header) + 1) + "|"]
    for system in systems:
        cells = [f"{deploy['algorithms'][a][b]['first_pass_seconds'][system]:.1f}" for a, b in settings]
        lines.append(f"| {system} | {' | '.join(cells)} |")
    return lines


def _whole_test_set_scores(deploy, name):
    whole = deploy["whole_test_set"]
    return whole["run (evaluate stage)"] if name == "saved_model" else whole[name]


def _test_set_table(deploy):
    lines = [
        "| export | test BLEU | lines equal to the run's | size on disk "
        "| resident memory, loaded and one line translated |",
        "|---|---|---|---|---|",
    ]
    for name in ("saved_model", *[k for k in deploy["whole_test_set"] if k != "run (evaluate stage)"]):
        scores = _whole_test_set_scores(deploy, name)
        equal = "-" if name == "saved_model" else f"{scores['lines_equal_to_the_run']:,} of {scores['lines']:,}"
        lines.append(
            f"| {name} | {scores['bleu']:.2f} | {equal} | {deploy['size_mb'][name]} MB "
            f"| {deploy['loaded_memory_mb'][name]:,.0f} MB |"
        )
    return lines


def _anchor_table(deploy):
    lines = ["| | " + " | ".join(deploy["anchor"]) + " |", "|---" * (len(deploy["anchor"]) + 1) + "|"]
    for quantization in ("float32", "int8"):
        cells = []
        for setting in deploy["anchor"].values():
            rate = setting["sentences_per_second"]
            over = setting["tfkd_over_anchor"][quantization]
            cells.append(f"{rate[f'anchor {quantization}']:,} / {rate[f'tfkd {quantization}']:,} ({over:.2f})")
        lines.append(f"| {quantization}: anchor / tfkd | {' | '.join(cells)} |")
    return lines
