"""The ``tfkd`` command: ``run``, ``validate``, ``export``, ``translate``."""

import argparse
import contextlib
import json
import logging
import math
import os
import re
import sys
import tempfile

EXIT_SPEC_ERROR = 2
# lines per call of a SavedModel that does not record its spec's decode.batch_size
SAVED_MODEL_BATCH_SIZE = 64
EXIT_RUN_ERROR = 1


def _setup_logging(verbose):
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s tfkd %(levelname).1s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # library warnings go through logging, shown with --verbose
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose else logging.ERROR)


# TensorFlow's C++ start-up lines: absl's pre-init warning, glog-style lines such as
# "I0000 00:00:1795.123 8158 port.cc:153] oneDNN custom operations are on..." and the
# continuation of cpu_feature_guard's message
_START_UP_LINE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)"
                            r"|[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\] "
                            r"|To enable the following instructions: .*rebuild TensorFlow")


@contextlib.contextmanager
def _native_stderr_captured(into):
    """Point file descriptor 2 (where C++ libraries write) at a temporary file while the body
    runs; what was written there is appended to the list ``into`` afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            into.append(captured.read().decode("utf-8", "replace"))


def import_tensorflow():
    """Import TensorFlow, Keras and keras-hub with their C++ start-up lines (oneDNN, CUDA, CPU
    features, absl) kept off the terminal; they are shown if the import itself fails."""
    if "keras_hub" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # this process's C++ INFO and WARNING lines
    captured = []
    try:
        with _native_stderr_captured(captured):
            import keras  # noqa: F401
            import keras_hub  # noqa: F401
            import tensorflow as tf

            tf.config.list_logical_devices("CPU")
    except BaseException:
        sys.stderr.write("".join(captured))
        raise


def load_spec(path, overrides=()):
    """:func:`tfkd.spec.load_spec`, keeping off the terminal the TensorFlow start-up lines that
    a spec's ``imports`` (a user module importing keras) print; anything else they write to
    stderr is shown."""
    from tfkd.spec import load_spec as load

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    captured = []
    try:
        with _native_stderr_captured(captured):
            return load(path, overrides)
    finally:
        sys.stderr.write("".join(line for line in "".join(captured).splitlines(True)
                                 if not _START_UP_LINE.match(line)))


def _fail(message, code):
    print(f"tfkd: error: {message}", file=sys.stderr)
    return code


def cmd_validate(args):
    from tfkd.spec import SpecError

    status = 0
    for path in args.specs:
        try:
            load_spec(path, args.set)
            print(f"{path}: ok")
        except SpecError as e:
            print(str(e), file=sys.stderr)
            status = EXIT_SPEC_ERROR
    return status


def _run_errors():
    """The exception types a run reports as one line (imported lazily)."""
    from tfkd.data import DataError
    from tfkd.runner import StageError

    return DataError, StageError


def cmd_run(args):
    from tfkd.pipeline import build_stages, requested_stages
    from tfkd.spec import SpecError

    try:
        spec = load_spec(args.spec, args.set)
        names = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
        stages = requested_stages(spec, names)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    import_tensorflow()
    from tfkd.runner import Runner
    from tfkd.stages import RunContext

    try:
        runner = Runner(spec, build_stages(spec))
        # Keras' progress output goes to stderr with the logs: stdout keeps the results
        with contextlib.redirect_stdout(sys.stderr):
            results = runner.run(stages, RunContext(spec, runner))
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except _run_errors() as e:
        return _fail(str(e), EXIT_RUN_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted; finished stages and the last checkpoint are kept", 130)
    for train_stage, evaluate_stage in compared_students(spec):
        who = "student" if train_stage == "train" else train_stage
        for split, scores in (results.get(evaluate_stage) or {}).items():
            if isinstance(scores, dict) and "score" in scores:
                print(f"{spec.name}: {who} {split} {scores['metric']} {scores['score']:.2f}"
                      + (f" ({scores['signature']})" if scores.get("signature") else ""))
    table = comparison_table(spec, results)
    if table:
        print(table)
    return 0


def compared_students(spec):
    """``(train stage, evaluate stage)`` of every student a run trains: the baseline, the
    variants, the main one."""
    return [("baseline", "baseline_evaluate"), *[(name, f"{name}_evaluate") for name in spec.variants or {}],
            ("train", "evaluate")]


def comparison_table(spec, results):
    """The students this run evaluated (baseline, variants, the main one): the metric per
    split, steps, wall time of each stage; ``None`` with fewer than two."""
    from tfkd import registry
    from tfkd.stage_names import TEACHER_TARGETS, method_stage_names

    students = [(t, e) for t, e in compared_students(spec) if t in results and e in results]
    if len(students) < 2:
        return None
    # a split without labels is predicted but has no score
    splits = [s for s in spec.evaluate.splits if all("score" in (results[e].get(s) or {}) for _, e in students)]
    metric = next(iter(results[students[-1][1]].values()), {}).get("metric", "score")
    header = ["student", *[f"{s} {metric}" for s in splits], "decode", "trainable params", "steps", "train s",
              "method stages s"]
    # the stages the method adds (a teacher's fine-tuning and cache, say)
    teacher_seconds = sum((results.get(s) or {}).get("seconds", 0) for s in method_stage_names(spec))
    rows = []
    teacher = registry.lookup("method", spec.method).teacher_row(spec, results)
    if teacher and all("score" in (teacher["scores"].get(s) or {}) for s in splits):
        rows.append([teacher["label"], *[f"{teacher['scores'][s]['score']:.2f}" for s in splits], "-",
                     f"{teacher['parameters']:,}", str(teacher.get("steps", "?")), f"{teacher.get('seconds', 0):.0f}",
                     "-"])
    for train, evaluate in students:
        method = results[train].get("method", "?")
        weights = " ".join(f"{k}={v:g}" for k, v in (results[train].get("loss_weights") or {}).items())
        label = "baseline" if train == "baseline" else f"{method} ({weights})" if weights else method
        if train not in ("baseline", "train"):
            label = f"{train}: {label}"
        own_stages = registry.lookup("method", method).stage_names if method in registry.names("method") else ()
        own_spec = spec.variant(train) if train in (spec.variants or {}) else spec
        if train != "baseline" and getattr(own_spec.distill, "targets", None) == TEACHER_TARGETS:
            label += " on teacher translations"  # sequence-level KD
        if results[train].get("initialised_from"):
            label += f", from {results[train]['initialised_from']}"
        trainable = results[train].get("trainable_parameters")
        rows.append([label, *[f"{results[evaluate][s]['score']:.2f}" for s in splits], own_spec.decode.algorithm
                     if hasattr(own_spec.decode, "algorithm") else "-", f"{trainable:,}" if trainable else "?",
                     str(results[train].get("steps", "?")), f"{results[train].get('seconds', 0):.0f}",
                     f"{teacher_seconds:.0f}" if own_stages else "-"])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def _open_finished_run(run_dir, stage):
    """``(spec, runner, context)`` of a run whose ``stage`` finished; reads no corpus."""
    from tfkd.pipeline import open_run
    from tfkd.runner import StageError
    from tfkd.spec import SpecError

    spec, runner, context = open_run(run_dir)
    trained = [t for t, _ in compared_students(spec) if t in runner.stages]
    if stage not in runner.stages or (stage != "train" and stage not in trained):
        raise SpecError(f"--student {stage}: not a student of {run_dir}; choices: {', '.join(trained)}")
    if not runner.is_finished(stage):
        raise StageError(f"{run_dir}: the {stage} stage is not finished (run: tfkd run SPEC --stages {stage})")
    return spec, runner, context


def cmd_export(args):
    from tfkd.spec import SpecError

    try:
        import_tensorflow()
        from tfkd.export import directory_size, export_adapters, export_saved_model
        from tfkd.stages import load_student

        spec, runner, context = _open_finished_run(args.run_dir, "train")
        out = args.out or os.path.join(args.run_dir, "export")
        student = load_student(context)
        name, version = args.model_name or spec.export.model_name or spec.name, args.version or spec.export.version
        if args.adapters_only or spec.export.adapters_only:
            path = export_adapters(student, out, name, version)
        else:
            path = export_saved_model(lambda target: context.task.export(context, student, target), out, name,
                                      version)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except _run_errors() as e:
        return _fail(str(e), EXIT_RUN_ERROR)
    print(f"exported {path} ({directory_size(path) / 1e6:.1f} MB)")
    return 0


def _find_saved_model(path):
    """``path`` itself, or the newest numeric version under it (a TF Serving base path)."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted((int(d) for d in os.listdir(path) if d.isdigit()), reverse=True) if os.path.isdir(path) else []
    if versions:
        return os.path.join(path, str(versions[0]))
    return None


def _saved_model_predictor(saved_model, batch_size):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the ops the graph uses)

    serve = tf.saved_model.load(saved_model).signatures["serving_default"]
    # tfkd exports say which input and output carry the text; otherwise the signature's only
    # string input and its first string output
    info = {"input": next(iter(serve.structured_input_signature[1])),
            "output": next(k for k, v in serve.structured_outputs.items() if v.dtype == tf.string),
            "batch_size": SAVED_MODEL_BATCH_SIZE}
    info_path = os.path.join(saved_model, "assets.extra", "tfkd.json")
    if os.path.exists(info_path):
        with open(info_path) as f:
            info.update(json.load(f))
    batch_size = batch_size or info["batch_size"]

    def predict(lines):
        # length-sorted batches pad least; outputs in input order
        order = sorted(range(len(lines)), key=lambda i: len(lines[i].split()))
        outputs = [None] * len(lines)
        bar = keras_progress(math.ceil(len(lines) / batch_size))
        for start in range(0, len(lines), batch_size):
            index = order[start : start + batch_size]
            result = serve(**{info["input"]: tf.constant([lines[i] for i in index])})
            for i, output in zip(index, result[info["output"]].numpy()):
                outputs[i] = output.decode("utf-8")
            if bar:
                bar.update(start // batch_size + 1)
        return outputs

    return predict


def keras_progress(steps):
    import keras

    return keras.utils.Progbar(steps, unit_name="batch") if steps else None


def _decode_overrides(decode, assignments):
    """``decode`` with ``--set decode.KEY=VALUE`` settings applied and validated."""
    import pydantic
    import yaml

    from tfkd.spec import SpecError

    settings = decode.model_dump()
    for assignment in assignments or []:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.startswith("decode.") or "." in key[len("decode."):]:
            raise SpecError(f"--set {assignment}: expected decode.KEY=VALUE (translate changes decoding only)")
        try:
            settings[key[len("decode."):]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise SpecError(f"--set {assignment}: the value is not valid YAML") from None
        try:
            decode = type(decode).model_validate(settings)
        except pydantic.ValidationError as e:
            from tfkd.spec import _pydantic_message

            error = e.errors()[0]
            if error["type"] == "extra_forbidden":
                message = f"unknown key; valid keys: {', '.join(type(decode).model_fields)}"
            else:
                message = _pydantic_message(error)
            raise SpecError(f"--set {assignment}: {message}") from None
    return decode


def _read_input(path):
    """The lines of ``path`` (stdin when ``None``)."""
    from tfkd.spec import SpecError

    if not path:
        return [line.rstrip("\n") for line in sys.stdin]
    try:
        with open(path, encoding="utf-8") as source:
            return [line.rstrip("\n") for line in source]
    except OSError as e:
        raise SpecError(f"{path}: cannot read input ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def _saved_model_info(saved_model):
    info_path = os.path.join(saved_model, "assets.extra", "tfkd.json")
    if not os.path.exists(info_path):
        return {}
    with open(info_path) as f:
        return json.load(f)


def cmd_translate(args, lines=None, continues_text=False):
    """``tfkd translate`` / ``predict`` (any task's predictions of lines) and, with
    ``continues_text``, ``tfkd generate`` (a model whose predictions continue the input)."""
    from tfkd.spec import SpecError

    what = "a model that continues text (a language model)"
    try:
        if lines is None:
            lines = _read_input(args.input)
        if not os.path.exists(args.model):
            raise SpecError(f"{args.model}: no such SavedModel or run directory")
        import_tensorflow()
        saved_model = _find_saved_model(args.model)
        if saved_model:
            if args.student or args.set:
                raise SpecError(f"{args.model}: --student and --set apply to a run directory; an export decodes "
                                "as it was exported")
            info = _saved_model_info(saved_model)
            if continues_text and info and info.get("output") != "continuation":
                raise SpecError(f"{args.model}: a {info.get('task')} model; tfkd generate needs {what} "
                                "(tfkd predict gives any model's predictions)")
            predict = _saved_model_predictor(saved_model, args.batch_size)
        else:
            from tfkd.stages import load_student

            spec, _, context = _open_finished_run(args.model, args.student or "train")
            if continues_text and not getattr(context.task, "continues_text", False):
                raise SpecError(f"{args.model}: a {spec.task} run; tfkd generate needs {what} "
                                "(tfkd predict gives any run's predictions)")
            own = spec.variant(args.student) if args.student in (spec.variants or {}) else spec
            own = own.model_copy(update={"decode": _decode_overrides(own.decode, args.set)})
            context = context.with_spec(own)
            predict = context.task.predictor(context, load_student(context, args.student or "train"))
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except _run_errors() as e:
        return _fail(str(e), EXIT_RUN_ERROR)
    # Keras' progress bar writes to stdout: send it to stderr, keep stdout for the output
    with contextlib.redirect_stdout(sys.stderr):
        outputs = predict(lines)
    text = "".join(o + "\n" for o in outputs)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as sink:
            sink.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def cmd_generate(args):
    from tfkd.spec import SpecError

    try:
        lines = list(args.prompt) if args.prompt else _read_input(args.input)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    return cmd_translate(args, lines, continues_text=True)


def build_parser():
    parser = argparse.ArgumentParser(prog="tfkd", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a spec's stages (skipping those already done)")
    run.add_argument("spec")
    run.add_argument("--stages", help="comma-separated stages to run (default: the spec's stages)")
    run.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                     help="override a spec value (repeatable)")
    run.set_defaults(func=cmd_run)

    validate = commands.add_parser("validate", help="check specs without running anything")
    validate.add_argument("specs", nargs="+")
    validate.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    validate.set_defaults(func=cmd_validate)

    export = commands.add_parser("export", help="write a TF Serving SavedModel from a run directory")
    export.add_argument("run_dir")
    export.add_argument("--out", help="base directory (default: RUN_DIR/export)")
    export.add_argument("--model-name", help="default: the spec's export.model_name or run name")
    export.add_argument("--version", type=int, help="default: the spec's export.version")
    export.add_argument("--adapters-only", action="store_true",
                        help="write only the trained weights and config (VERSION.adapters.safetensors; a student on "
                             "frozen pretrained models, such as AB-Net) instead of a SavedModel")
    export.set_defaults(func=cmd_export)

    translate = commands.add_parser("translate", aliases=["predict"],
                                    help="translate (or classify: any task's predictions) lines with an export or "
                                         "a run directory")
    translate.add_argument("model", help="a SavedModel, a TF Serving base path, or a run directory")
    translate.add_argument("-i", "--input", help="input file (default: stdin)")
    translate.add_argument("-o", "--output", help="output file (default: stdout)")
    translate.add_argument("--batch-size", type=int,
                           help="default: the spec's decode.batch_size (kept in the export)")
    translate.add_argument("--student", help="a run's train stage to translate with (default: train; a variant's "
                                             "name uses the variant's student and decode settings)")
    translate.add_argument("--set", action="append", metavar="decode.KEY=VALUE",
                           help="change a decoding setting of a run (e.g. decode.iterations=4, decode.beam_size=5)")
    translate.set_defaults(func=cmd_translate)

    generate = commands.add_parser("generate", help="continue text with a language model (an export or a run "
                                                    "directory): one continuation per prompt")
    generate.add_argument("model", help="a SavedModel, a TF Serving base path, or a language-model run directory")
    generate.add_argument("--prompt", action="append", help="a prompt (repeatable; default: one per line of "
                                                            "--input or stdin)")
    generate.add_argument("-i", "--input", help="prompts file, one a line (default: stdin)")
    generate.add_argument("-o", "--output", help="output file (default: stdout)")
    generate.add_argument("--batch-size", type=int, help="default: the spec's decode.batch_size")
    generate.add_argument("--student", help="a run's train stage to generate with (default: train)")
    generate.add_argument("--set", action="append", metavar="decode.KEY=VALUE",
                          help="change a sampling setting of a run (decode.sampler=top_p, decode.top_p=0.9, "
                               "decode.max_new_tokens=64, decode.seed=1)")
    generate.set_defaults(func=cmd_generate)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
