"""Exports: text-in SavedModels that load and run with only tensorflow + tensorflow_text."""

import json
import os
import re
import subprocess
import sys

import pytest
from helpers import REPO, serve_only, tfkd, write_spec
from shared_runs import tiny_exported_run

from tfkd.models.abilities import AdapterStudent

SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "", "Eine Frau singt."]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_dir):
    """The tiny spec's run, evaluated and exported (shared with tests/test_predictor.py)."""
    run_dir, saved_model, out = tiny_exported_run(tmp_path_factory, data_dir)
    assert (saved_model / "saved_model.pb").exists()
    # the log names where the export is once the stage is done, not its work folder
    assert re.search(rf"tfkd I export: {re.escape(str(saved_model))}, a TF Serving SavedModel", out.stderr), out.stderr[
        -3000:
    ]
    assert "export.partial" not in "".join(line for line in out.stderr.splitlines() if "tfkd I export: " in line)
    return run_dir, saved_model


@pytest.mark.slow
def test_export_serves_without_tfkd_and_matches_tfkd_decoding(exported, data_dir, tmp_path):
    run_dir, saved_model = exported
    with open(os.path.join(data_dir, "multi30k_deen", "valid.de")) as f:
        valid = [next(f).strip() for _ in range(40)]
    served = serve_only(saved_model, valid, tmp_path)
    assert served["loaded"] == []
    # the evaluate stage decoded the same sentences in-process through tfkd's Translator
    in_process = open(run_dir / "evaluate" / "valid.hyp").read().splitlines()
    assert served["translations"] == in_process
    # odd inputs (an empty line among them) too, translations and scores
    import numpy as np

    from tfkd.pipeline import open_run
    from tfkd.stages import load_student

    _, _, context = open_run(str(run_dir))
    translator = context.task.translator(context, load_student(context))
    translations, scores = translator.translate_all(SENTENCES)
    odd = serve_only(saved_model, SENTENCES, tmp_path)
    assert odd["translations"] == list(translations)
    np.testing.assert_allclose(odd["scores"], np.asarray(scores, np.float32), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_the_score_signature_gives_the_students_teacher_forced_distributions(exported, data_dir):
    import json

    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    from tfkd.data import vocabulary_sha256
    from tfkd.pipeline import open_run
    from tfkd.stages import load_student

    run_dir, saved_model = exported
    info = json.load(open(saved_model / "assets.extra" / "tfkd.json"))
    _, _, context = open_run(str(run_dir))
    target_tokenizer = context.tokenizers().target
    assert info["signatures"] == {"score": ["source", "target"]}
    assert info["target_vocabulary_sha256"] == vocabulary_sha256(target_tokenizer)
    sources = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau singt."]
    targets = ["A man rides a bike.", "Two dogs play in the snow.", "A woman is singing loudly today."]
    score = tf.saved_model.load(str(saved_model)).signatures["score"]
    out = {k: v.numpy() for k, v in score(source=tf.constant(sources), target=tf.constant(targets)).items()}
    student = load_student(context)
    special = context.tokenizers()
    pad, bos, eos = (target_tokenizer.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]"))
    for i, (source, target) in enumerate(zip(sources, targets)):
        y = list(np.asarray(target_tokenizer(target)))
        assert list(out["target_ids"][i][: len(y) + 1]) == y + [eos]
        assert set(out["target_ids"][i][len(y) + 1 :]) <= {pad}
        source_ids = np.asarray(special.source(source), np.int32)[None]
        logits = student({"source_ids": source_ids, "decoder_ids": np.asarray([[bos, *y]], np.int32)}, training=False)
        np.testing.assert_allclose(out["logits"][i][: len(y) + 1], np.asarray(logits)[0], atol=1e-4)
        log_probs = tf.nn.log_softmax(logits[0]).numpy()
        expected = sum(log_probs[t, token] for t, token in enumerate(y + [eos]))
        np.testing.assert_allclose(out["log_likelihood"][i], expected, rtol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="as many lines each"):
        score(source=tf.constant(sources), target=tf.constant(targets[:2]))


@pytest.mark.slow
def test_xla_decoding_translates_as_plain_decoding_in_process_and_exported(exported, data_dir, tmp_path):
    """``decode.jit_compile: true``: the same translations (scores within float rounding) from an
    XLA-compiled decoder, sources padded to a multiple of data.bucket_width, one program per
    batch size and bucket; ``tfkd export --set decode.jit_compile=true`` keeps the compiled
    function in the export, which serves without tfkd."""
    import numpy as np

    from tfkd.pipeline import open_run
    from tfkd.stages import load_student

    run_dir, _ = exported
    with open(os.path.join(data_dir, "multi30k_deen", "valid.de")) as f:
        valid = [next(f).strip() for _ in range(40)] + SENTENCES
    _, _, context = open_run(str(run_dir))
    student = load_student(context)
    plain = context.task.translator(context, student)
    xla_spec = context.spec.model_copy(update={"decode": context.spec.decode.model_copy(update={"jit_compile": True})})
    xla = context.task.translator(context.with_spec(xla_spec), student)
    assert not plain.jit_compile and xla.jit_compile
    translations, scores = plain.translate_all(valid)
    xla_translations, xla_scores = xla.translate_all(valid)
    assert xla_translations == translations
    np.testing.assert_allclose(xla_scores, scores, rtol=1e-4, atol=1e-4)
    (compiled,) = xla._compiled.values()  # the decoder XLA runs: one function, traced per width
    widths = {int(c.structured_input_signature[0][0].shape[1] or -1) for c in compiled._list_all_concrete_functions()}
    assert widths and all(w == -1 or w % context.spec.data.bucket_width == 0 for w in widths), widths

    # tfkd export --set decode.jit_compile=true: the run's student, exported with that decoding
    flags = ["--out", str(tmp_path / "models"), "--model-name", "xla", "--set", "decode.jit_compile=true"]
    out = tfkd("export", str(run_dir), *flags)
    assert out.returncode == 0, out.stderr[-3000:]
    path = tmp_path / "models" / "xla" / "1"
    served = serve_only(path, valid, tmp_path)
    assert served["loaded"] == [] and served["translations"] == list(translations)
    # the decoder stays XLA-compiled where the export is served; the run's own export is plain
    assert b"_XlaMustCompile" in (path / "saved_model.pb").read_bytes()
    assert b"_XlaMustCompile" not in (exported[1] / "saved_model.pb").read_bytes()
    # TF Serving's warm-up requests: one single-line Predict request a source bucket, so the
    # server compiles every bucket's batch-1 program as it loads; the plain export has none
    check_warmup_requests(path, context.spec.data.bucket_width, context.spec.data.max_tokens)
    assert not (exported[1] / "assets.extra" / "tf_serving_warmup_requests").exists()
    bad = tfkd("export", str(run_dir), "--out", str(tmp_path / "bad"), "--set", "train.steps=3")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "--set train.steps=3: expected decode.KEY=VALUE (export changes decoding only)"
    ], bad.stderr
    assert not (tmp_path / "bad").exists()


def check_warmup_requests(path, bucket_width, max_tokens):
    """The export at ``path`` holds a warm-up request for every source width its XLA decoder
    compiles a program for: ``bucket_width``, twice it, ... up to ``max_tokens`` + 1 rounded up."""
    import math

    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    records = tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests"))
    requests = [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request for r in records]
    assert requests and all(r.model_spec.signature_name == "serving_default" for r in requests)
    batches = [tf.make_ndarray(r.inputs["source"]) for r in requests]
    assert all(batch.shape == (1,) for batch in batches)
    lines = [batch[0].decode() for batch in batches]
    counted = tf.saved_model.load(str(path)).signatures["source_length"](source=tf.constant(lines))
    widths = [math.ceil((min(n, max_tokens) + 1) / bucket_width) * bucket_width for n in counted["source_tokens"]]
    widest = math.ceil((max_tokens + 1) / bucket_width) * bucket_width
    assert widths == list(range(bucket_width, widest + 1, bucket_width)), (widths, lines)


def test_decode_precision_bfloat16_runs_the_student_and_its_export_in_bfloat16(exported, data_dir, tmp_path):
    """``decode.precision: bfloat16``: the student rebuilt under mixed_bfloat16 (float32 weights,
    bfloat16 matmuls), its teacher-forced log-likelihoods close to float32's and its
    translations mostly the same; the export's graph multiplies in bfloat16 and serves."""
    import numpy as np
    import tensorflow as tf

    from tfkd.exporters.saved_model import SavedModelExporter
    from tfkd.pipeline import open_run
    from tfkd.stages import load_student

    run_dir, _ = exported
    with open(os.path.join(data_dir, "multi30k_deen", "valid.de")) as f:
        valid = [next(f).strip() for _ in range(40)]
    with open(os.path.join(data_dir, "multi30k_deen", "valid.en")) as f:
        references = [next(f).strip() for _ in range(40)]
    _, _, context = open_run(str(run_dir))
    bf16_spec = context.spec.model_copy(
        update={"decode": context.spec.decode.model_copy(update={"precision": "bfloat16"})}
    )
    bf16_context = context.with_spec(bf16_spec)
    plain, bf16 = load_student(context), load_student(bf16_context)
    assert plain.target_embedding.compute_dtype == "float32"
    assert bf16.target_embedding.compute_dtype == "bfloat16"
    assert {v.dtype for v in bf16.weights} == {"float32"}  # the weights stay as trained
    for a, b in zip(plain.weights, bf16.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    scored = {
        name: tf.function(context.task.translator(c, student)._score)(tf.constant(valid), tf.constant(references))[
            "log_likelihood"
        ].numpy()
        for name, c, student in (("float32", context, plain), ("bfloat16", bf16_context, bf16))
    }
    np.testing.assert_allclose(scored["bfloat16"], scored["float32"], rtol=0.02)
    assert not np.array_equal(scored["bfloat16"], scored["float32"])  # it did compute in bfloat16
    translations, _ = context.task.translator(context, plain).translate_all(valid)
    bf16_translations, _ = bf16_context.task.translator(bf16_context, bf16).translate_all(valid)
    assert sum(a == b for a, b in zip(translations, bf16_translations)) >= 0.8 * len(valid)

    path = SavedModelExporter().export(bf16_context, bf16, str(tmp_path / "models" / "bf16"), 1)
    served = serve_only(path, valid, tmp_path)
    assert served["loaded"] == [] and served["translations"] == list(bf16_translations)
    assert "bfloat16" in matmul_types(path) and "bfloat16" not in matmul_types(saved_model_of(exported))


def saved_model_of(exported):
    return str(exported[1])


def matmul_types(path):
    """The element types the matrix products of a SavedModel's graph (its functions) run in."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import dtypes

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    nodes = [n for g in saved.meta_graphs for fn in g.graph_def.library.function for n in fn.node_def]
    return {dtypes.as_dtype(n.attr["T"].type).name for n in nodes if n.op in ("MatMul", "BatchMatMulV2", "Einsum")}


@pytest.mark.slow
def test_hostile_requests_get_bounded_answers_or_the_signature_s_error(exported, data_dir, tmp_path):
    """tools/bench_serving.py's hostile requests, in a process with only tensorflow and
    tensorflow_text as a server holds the export: each answered in bounded time and memory, or
    refused by the signature."""
    _, saved_model = exported
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "bench_serving.py"),
            str(saved_model),
            "-i",
            os.path.join(data_dir, "multi30k_deen", "test.de"),
            "--pool",
            "4",
            "--no-load",
            "--hostile",
            "--json",
            str(tmp_path / "hostile.json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "hostile.json").read_text())
    rows = {row["request"]: row for row in result["hostile"]}
    one = translation_alone(saved_model, data_dir, tmp_path)
    # 10,000 lines in one request: 10,000 answers, each the line's alone, through calls of
    # decode.batch_size lines: the model's memory stays a call's (8 MB more here; in one call,
    # this tiny model's request added 190 MB at its peak)
    assert rows["10,000 lines"]["outcome"] == f"10000 answers, first {one[:40]!r}"
    assert rows["10,000 lines"]["peak_mb_added"] < 50, rows["10,000 lines"]
    for name in ("1 MB line", "1 MB word", "NUL and controls", "RTL and combining"):
        assert rows[name]["outcome"].startswith("1 answers") and rows[name]["seconds"] < 30, rows[name]
    assert rows["not UTF-8"]["outcome"].startswith("2 answers")
    assert rows["empty request"]["outcome"] == "0 answers"
    assert not rows["int32 tensor"]["answered"]
    assert "expected to be a string tensor but is a int32 tensor" in rows["int32 tensor"]["outcome"]


def translation_alone(saved_model, data_dir, tmp_path):
    """The export's translation of the test set's first line, sent alone."""
    with open(os.path.join(data_dir, "multi30k_deen", "test.de")) as f:
        first = next(f).rstrip("\n")
    return serve_only(saved_model, [first], tmp_path)["translations"][0]


@pytest.mark.slow
def test_export_max_input_chars_cuts_every_line_in_the_graph(exported, tmp_path):
    """``export.max_input_chars: 12``: a line translates as its first 12 characters do."""
    from tfkd.exporters.saved_model import SavedModelExporter
    from tfkd.pipeline import open_run
    from tfkd.stages import load_student

    run_dir, _ = exported
    _, _, context = open_run(str(run_dir))
    spec = context.spec.model_copy(update={"export": context.spec.export.model_copy(update={"max_input_chars": 12})})
    path = SavedModelExporter().export(
        context.with_spec(spec), load_student(context), str(tmp_path / "models" / "cut"), 1
    )
    assert json.load(open(os.path.join(path, "assets.extra", "tfkd.json")))["max_input_chars"] == 12
    lines = ["Zwei Hunde spielen im Schnee.", "Ein Mann fährt Fahrrad.", "Ein Hund."]
    cut_lines = [line[:12] for line in lines]  # "Zwei Hunde s", "Ein Mann fäh", "Ein Hund."
    full_export = run_dir / "export" / "exported" / "1"
    # one request each (the longest line of a request sets its longest translation)
    assert (
        serve_only(path, lines, tmp_path)["translations"]
        == serve_only(full_export, cut_lines, tmp_path)["translations"]
    )
    assert serve_only(full_export, lines, tmp_path)["scores"] != serve_only(full_export, cut_lines, tmp_path)["scores"]


# what tools/benchmark_export.py does, in a process that has not imported the student's class
LOAD_STUDENT = r"""
import sys
from tfkd.pipeline import open_run
from tfkd.stages import load_student

spec, runner, context = open_run(sys.argv[1])
print(type(load_student(context)).__name__)
"""


@pytest.mark.slow
def test_load_student_from_a_run_dir_in_a_fresh_process(exported, tmp_path):
    run_dir, _ = exported
    out = subprocess.run(
        [sys.executable, "-c", LOAD_STUDENT, str(run_dir)], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "TransformerSeq2Seq"


@pytest.mark.slow
def test_tfkd_translate_reads_an_export_and_a_run_dir(exported, tmp_path):
    run_dir, saved_model = exported
    source = tmp_path / "in.de"
    source.write_text("\n".join(SENTENCES) + "\n")
    from_export = tfkd("translate", str(saved_model.parent), "-i", str(source), "-o", str(tmp_path / "a.en"))
    assert from_export.returncode == 0, from_export.stderr[-3000:]
    from_run = tfkd("translate", str(run_dir), "-i", str(source))
    assert from_run.returncode == 0, from_run.stderr[-3000:]
    assert (tmp_path / "a.en").read_text().splitlines() == from_run.stdout.splitlines()
    assert len(from_run.stdout.splitlines()) == 4


def test_reference_on_an_export_scores_as_the_run_did(exported, tmp_path, data_dir):
    run_dir, saved_model = exported
    info = json.load(open(saved_model / "assets.extra" / "tfkd.json"))
    assert info["evaluate"] == {"lowercase": False, "tokenize": "13a"}  # the tiny spec's
    # the export of a run scored lowercased: its export says so, and --reference follows
    info["evaluate"] = {"lowercase": True, "tokenize": "13a"}
    (saved_model / "assets.extra" / "tfkd.json").write_text(json.dumps(info))
    try:
        with open(os.path.join(data_dir, "multi30k_deen", "valid.de")) as f:
            (tmp_path / "in.de").write_text("".join(next(f) for _ in range(5)))
        with open(os.path.join(data_dir, "multi30k_deen", "valid.en")) as f:
            (tmp_path / "ref.en").write_text("".join(next(f) for _ in range(5)))
        export = tfkd(
            "translate", str(saved_model), "-i", str(tmp_path / "in.de"), "--reference", str(tmp_path / "ref.en")
        )
        assert export.returncode == 0, export.stderr[-3000:]
        assert "case:lc" in export.stderr.splitlines()[-1]
    finally:
        info["evaluate"] = {"lowercase": False, "tokenize": "13a"}
        (saved_model / "assets.extra" / "tfkd.json").write_text(json.dumps(info))


@pytest.mark.slow
def test_saved_model_cli_show_and_run(exported):
    _, saved_model = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    show = subprocess.run([cli, "show", "--all", "--dir", str(saved_model)], capture_output=True, text=True)
    assert show.returncode == 0, show.stderr[-2000:]
    signature = show.stdout.split("signature_def['serving_default']")[1]
    assert "inputs['source'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in signature
    assert "outputs['translations'] tensor_info:\n        dtype: DT_STRING" in signature
    assert "outputs['scores'] tensor_info:\n        dtype: DT_FLOAT" in signature
    # the README's example input; stock saved_model_cli cannot load custom (TF Text) ops,
    # the tools/ wrapper registers them first
    wrapper = os.path.join(REPO, "tools", "saved_model_cli_text.py")
    run = subprocess.run(
        [
            sys.executable,
            wrapper,
            "run",
            "--dir",
            str(saved_model),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--input_exprs",
            'source=["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]',
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Result for output key translations:" in run.stdout
    assert "Result for output key scores:" in run.stdout


@pytest.mark.slow
def test_rest_body_and_grpc_predict_request_run_through_the_signature(exported):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    from tensorflow_serving.apis import predict_pb2

    _, saved_model = exported
    serve = tf.saved_model.load(str(saved_model)).signatures["serving_default"]

    # REST, row format: POST /v1/models/exported:predict {"instances": [...]}
    body = json.loads(json.dumps({"signature_name": "serving_default", "instances": SENTENCES}))
    rest = serve(source=tf.constant(body["instances"], dtype=tf.string))
    # REST, columnar format: {"inputs": {"source": [...]}}
    body = json.loads(json.dumps({"inputs": {"source": SENTENCES}}))
    columnar = serve(**{k: tf.constant(v, tf.string) for k, v in body["inputs"].items()})
    # gRPC: PredictionService.Predict(PredictRequest)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "exported"
    request.model_spec.signature_name = "serving_default"
    request.inputs["source"].CopyFrom(tf.make_tensor_proto(SENTENCES, dtype=tf.string))
    grpc = serve(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
    response = predict_pb2.PredictResponse()
    for name, value in grpc.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    from_proto = [t.decode() for t in tf.make_ndarray(response.outputs["translations"]).tolist()]
    assert from_proto == [t.decode() for t in rest["translations"].numpy().tolist()]
    assert from_proto == [t.decode() for t in columnar["translations"].numpy().tolist()]
    # one translation and one finite score per input, whatever the input (an empty line)
    assert len(from_proto) == len(SENTENCES)
    assert rest["scores"].shape == (len(SENTENCES),) and bool(tf.reduce_all(tf.math.is_finite(rest["scores"])))


def test_export_is_atomic(tmp_path):
    from tfkd.exporters.base import write_atomically

    targets = []

    def broken(path):
        targets.append(path)
        os.makedirs(path)
        open(os.path.join(path, "half"), "w").close()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(broken, str(tmp_path / "models" / "m" / "3"))
    # written beside the version folder under a name TF Serving ignores (not a number)
    assert os.path.dirname(targets[0]) == str(tmp_path / "models" / "m")
    assert not os.path.basename(targets[0]).split(".")[0].isdigit()
    # a failed or interrupted export leaves none of the folders it made (models/m/)
    assert not (tmp_path / "models").exists()
    with pytest.raises(KeyboardInterrupt):
        write_atomically(lambda path: (_ for _ in ()).throw(KeyboardInterrupt), str(tmp_path / "models" / "m" / "3"))
    assert not (tmp_path / "models").exists()
    (tmp_path / "m").mkdir()

    def write(content):
        def writer(path):
            os.makedirs(path)
            with open(os.path.join(path, "saved_model.pb"), "w") as f:
                f.write(content)

        return writer

    write_atomically(write("one"), str(tmp_path / "m" / "3"))
    assert (tmp_path / "m" / "3" / "saved_model.pb").read_text() == "one"
    # a version exported again is replaced whole; other versions stay
    write_atomically(write("two"), str(tmp_path / "m" / "3"))
    write_atomically(write("three"), str(tmp_path / "m" / "4"))
    assert sorted(os.listdir(tmp_path / "m")) == ["3", "4"]
    assert (tmp_path / "m" / "3" / "saved_model.pb").read_text() == "two"
    with pytest.raises(RuntimeError):
        write_atomically(broken, str(tmp_path / "m" / "3"))
    assert sorted(os.listdir(tmp_path / "m")) == ["3", "4"]
    assert (tmp_path / "m" / "3" / "saved_model.pb").read_text() == "two"

    # a file: its temporary keeps the suffix (a writer may need it), and goes on failure too
    def half_file(path):
        targets.append(path)
        open(path, "w").close()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(half_file, str(tmp_path / "m" / "5.adapters.safetensors"))
    assert targets[-1].endswith(".adapters.safetensors") and sorted(os.listdir(tmp_path / "m")) == ["3", "4"]


@pytest.mark.slow
def test_tfkd_export_command_writes_a_serving_layout(exported, tmp_path):
    run_dir, _ = exported
    out = tfkd("export", str(run_dir), "--out", str(tmp_path / "models"), "--model-name", "deen", "--version", "3")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith(f"exported {tmp_path}/models/deen/3 (")
    assert sorted(os.listdir(tmp_path / "models" / "deen")) == ["3"]
    served = serve_only(tmp_path / "models" / "deen" / "3", SENTENCES[:2], tmp_path)
    assert len(served["translations"]) == 2
    # a version is never rewritten: TF Serving reads a new number as a new model
    again = tfkd("export", str(run_dir), "--out", str(tmp_path / "models"), "--model-name", "deen", "--version", "3")
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"tfkd: error: {tmp_path}/models/deen/3: version 3 exists; export a new one with --version auto (next: 4) "
        "or --version N"
    ]
    auto = tfkd("export", str(run_dir), "--out", str(tmp_path / "models"), "--model-name", "deen", "--version", "auto")
    assert auto.returncode == 0, auto.stderr[-3000:]
    assert auto.stdout.startswith(f"exported {tmp_path}/models/deen/4 (")
    assert sorted(os.listdir(tmp_path / "models" / "deen")) == ["3", "4"]
    missing = tfkd("export", str(tmp_path))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [f"tfkd: error: {tmp_path}: not a tfkd run directory (no spec.yaml)"]
    typo = tfkd("export", str(tmp_path / "runs" / "quickstrat"))
    assert typo.returncode == 1
    assert typo.stderr.strip().splitlines() == [f"tfkd: error: {tmp_path}/runs/quickstrat: no such file or directory"]


def test_the_default_model_name_is_the_spec_s_name_not_the_run_folder_s(exported, tmp_path):
    import shutil

    run_dir, _ = exported
    renamed = tmp_path / "renamed_run"
    shutil.copytree(run_dir, renamed, ignore=shutil.ignore_patterns("export"))
    out = tfkd("export", str(renamed), "--out", str(tmp_path / "models"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert os.listdir(tmp_path / "models") == ["exported"]  # the spec's name: exported
    baseline = tfkd(
        "export", str(renamed), "--out", str(tmp_path / "models"), "--student", "train", "--version", "auto"
    )
    assert baseline.returncode == 0 and baseline.stdout.startswith(f"exported {tmp_path}/models/exported/2 (")


class WithAdapters(AdapterStudent):
    def save_adapters(self, path):
        with open(path, "w") as f:
            f.write("weights")


class TextTask:
    """A task whose export is a folder with a ``saved_model.pb``."""

    def export(self, context, student, path):
        os.makedirs(path)
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write(type(student).__name__)


def fake_run(**export):
    """``(spec, context)`` of a run named ``m`` with the spec's ``export`` section ``export``."""
    import types

    from tfkd.spec import ExportSpec

    class Spec(types.SimpleNamespace):
        def model_copy(self, update):
            return Spec(**{**vars(self), **update})

    class Context(types.SimpleNamespace):
        def with_spec(self, spec):
            return Context(spec=spec, task=self.task)

    spec = Spec(name="m", export=ExportSpec.model_validate(export), variants=None)
    return spec, Context(spec=spec, task=TextTask())


def test_only_a_student_with_adapters_exports_them_alone(tmp_path):
    from tfkd.exporters.adapters import AdaptersExporter
    from tfkd.runner import StageError

    class Plain:
        pass

    _, context = fake_run()
    with pytest.raises(StageError, match=r"^export.format adapters: a Plain student has no adapters to write alone"):
        AdaptersExporter().export(context, Plain(), str(tmp_path / "m"), 1)
    path = AdaptersExporter().export(context, WithAdapters(), str(tmp_path / "m"), 3)
    assert path == str(tmp_path / "m" / "3.adapters.safetensors") and open(path).read() == "weights"
    assert sorted(os.listdir(tmp_path / "m")) == ["3.adapters.safetensors"]  # no temporary left


@pytest.mark.parametrize(
    "export, written",
    [
        ({}, "1/saved_model.pb"),  # the default
        ({"format": "saved_model", "version": 2}, "2/saved_model.pb"),
        ({"format": "adapters"}, "1.adapters.safetensors"),
        ({"adapters_only": True}, "1.adapters.safetensors"),  # the old spelling of format: adapters
        ({"adapters_only": False}, "1/saved_model.pb"),
    ],
)
def test_the_export_stage_runs_the_exporter_the_spec_names(export, written, tmp_path, monkeypatch):
    from tfkd import stages

    monkeypatch.setattr(stages, "load_student", lambda context, train_stage: WithAdapters())
    _, context = fake_run(**export)
    result = stages.ExportStage("export", "train").run(context, str(tmp_path))
    entry = written.split("/")[0]
    assert result["path"] == os.path.join("m", entry) and os.listdir(tmp_path / "m") == [entry]
    assert (tmp_path / "m" / written).read_text() in ("weights", "WithAdapters")


def test_export_format_is_a_registered_exporter(tmp_path):
    from tfkd.spec import ExportSpec, SpecError, load_spec

    spec = write_spec(tmp_path, "formats")
    line = len(open(spec).read().splitlines()) + 2
    with open(spec, "a") as f:
        f.write("export:\n  format: savedmodel\n")
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    assert str(error.value) == (
        f'{spec}:{line}: export.format: unknown exporter "savedmodel"; did you mean '
        '"saved_model"? Choices: adapters, ctranslate2, saved_model'
    )
    with pytest.raises(SpecError, match=r"export: adapters_only: true is format: adapters; give one of them$"):
        load_spec(spec, ["export.format=saved_model", "export.adapters_only=true"])
    assert load_spec(spec, ["export.format=adapters", "export.adapters_only=true"]).export.format == "adapters"
    assert ExportSpec().format == "saved_model"
    assert "adapters_only" not in ExportSpec(adapters_only=True).model_dump()


def test_tfkd_export_format_picks_the_exporter(tmp_path, monkeypatch, capsys):
    from tfkd import cli, stages
    from tfkd.cli import export as export_command

    spec, context = fake_run()
    monkeypatch.setattr(export_command, "import_tensorflow", lambda: None)
    monkeypatch.setattr(export_command, "open_finished_run", lambda run_dir, stage: (spec, None, context))
    monkeypatch.setattr(stages, "load_student", lambda context, stage, weights=None: WithAdapters())
    run = tmp_path / "RUN"  # the default model name is the name of the spec the run was made with
    run.mkdir()
    (run / "spec.yaml").write_text("name: m\n")
    for flags, written in (
        (["--format", "adapters"], "1.adapters.safetensors"),
        (["--format", "saved_model", "--version", "2"], "2"),
        (["--adapters-only", "--version", "3"], "3.adapters.safetensors"),
        (["--version", "4"], "4"),
    ):  # the spec's export.format
        assert cli.main(["export", str(run), "--out", str(tmp_path), *flags]) == 0
        assert capsys.readouterr().out.startswith(f"exported {tmp_path / 'm' / written} (")
    assert sorted(os.listdir(tmp_path / "m")) == ["1.adapters.safetensors", "2", "3.adapters.safetensors", "4"]
    assert cli.main(["export", str(run), "--out", str(tmp_path), "--format", "savedmodel"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        '--format: unknown exporter "savedmodel"; did you mean "saved_model"? Choices: adapters, ctranslate2, '
        "saved_model"
    ]
    # a quantization is CTranslate2's
    assert cli.main(["export", str(run), "--out", str(tmp_path), "--quantization", "int8"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "--quantization: applies to format ctranslate2 (format is saved_model)"
    ]


def test_warmup_requests_without_tensorflow_serving_api_are_left_out_with_a_warning(tmp_path, monkeypatch, caplog):
    import sys

    from tfkd.exporters.text_saved_model import WARMUP_FILE, write_warmup_requests

    (tmp_path / "assets.extra").mkdir()
    import tensorflow_serving.apis.model_pb2  # noqa: F401  (as after an export that wrote the file)

    for name in [m for m in sys.modules if m.split(".")[0] == "tensorflow_serving"]:
        monkeypatch.setitem(sys.modules, name, None)  # not installed: every import of it fails
    with caplog.at_level("WARNING", logger="tfkd"):
        write_warmup_requests(str(tmp_path), ["ein Satz"], "source")
    assert not (tmp_path / WARMUP_FILE).exists()
    [warning] = [r.getMessage() for r in caplog.records if r.name == "tfkd"]
    assert warning.startswith("export: no TF Serving warm-up requests written (pip install tfkd[serving])")
