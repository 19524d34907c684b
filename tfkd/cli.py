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


def _setup_logging(verbose, quiet=False):
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s tfkd %(levelname).1s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # the terminal's level (a run's log.txt has its own)
        handler.setLevel(level)
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


def import_tensorflow(multi_worker=False):
    """Import TensorFlow, Keras and keras-hub with their C++ start-up lines (oneDNN, CUDA, CPU
    features, absl) kept off the terminal; they are shown if the import itself fails. With
    ``multi_worker``, TensorFlow starts by joining the ``TF_CONFIG`` cluster
    (:func:`tfkd.distribute.start_multi_worker`)."""
    if "keras_hub" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # this process's C++ INFO and WARNING lines
    captured = []
    try:
        with _native_stderr_captured(captured):
            import keras  # noqa: F401
            import keras_hub  # noqa: F401
            import tensorflow as tf

            if multi_worker:
                from tfkd.distribute import start_multi_worker

                start_multi_worker()
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
            return load(path, overrides, check_models=True)
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
    """The exception types a run reports as one line (without importing TensorFlow: a
    ``DataError`` can only come from :mod:`tfkd.data` once it is imported)."""
    from tfkd.distribute import DistributeError
    from tfkd.runner import StageError

    data = sys.modules.get("tfkd.data")
    return (data.DataError, StageError, DistributeError) if data is not None else (StageError, DistributeError)


def _spec_and_stages(args):
    """``(spec, stages)`` of ``SPEC [--set ...] [--stages ...]``; SpecError on a mistake."""
    from tfkd.pipeline import requested_stages

    spec = load_spec(args.spec, args.set)
    names = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    return spec, requested_stages(spec, names)


def cmd_run(args):
    from tfkd.pipeline import build_stages
    from tfkd.spec import SpecError

    try:
        spec, stages = _spec_and_stages(args)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    from tfkd.distribute import DistributeError, wants_multi_worker

    try:
        multi_worker = wants_multi_worker(getattr(getattr(spec, "train", None), "strategy", "auto"))
    except DistributeError as e:
        return _fail(str(e), EXIT_RUN_ERROR)
    if multi_worker:
        logging.getLogger("tfkd").info("multi-worker: joining the cluster of TF_CONFIG (waiting for every worker)")
    import_tensorflow(multi_worker)
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


def cmd_config(args):
    import yaml

    from tfkd.spec import SpecError
    from tfkd.stage_names import stage_names

    try:
        spec, planned = _spec_and_stages(args)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    print(f"# {args.spec}, resolved" + (f" with {' '.join('--set ' + a for a in args.set)}" if args.set else ""))
    print(yaml.safe_dump(spec.to_dict(), sort_keys=False).rstrip())
    print(f"# stage plan: tfkd run runs these in this order into {os.path.join(spec.run_dir, spec.name)}")
    for name, (needs, state) in _stage_plan(spec, planned).items():
        print(f"#   {name:<24} {state:<10} needs: {', '.join(needs) or '-'}")
    others = [n for n in stage_names(spec) if n not in planned]
    if others:
        print(f"# also available with --stages: {', '.join(others)}")
    return 0


def _stage_plan(spec, planned):
    """``{stage: (dependencies, state)}``: state ``done`` (its run directory holds it with these
    inputs), ``changed`` (it holds it, made from other inputs: it runs again), ``to run``, or
    why its inputs cannot be read yet."""
    import_tensorflow()
    from tfkd.pipeline import build_stages
    from tfkd.runner import Runner

    runner = Runner(spec, build_stages(spec))
    plan = {}
    for name in planned:
        needs = list(runner.stages[name].dependencies(spec))
        try:
            state = "done" if runner.is_done(name) else "changed" if runner.is_finished(name) else "to run"
        except _run_errors() as e:
            state = f"inputs missing ({e})"
        plan[name] = (needs, state)
    return plan


def cmd_list(args):
    from tfkd import registry
    from tfkd.spec import SpecError

    if args.spec:
        try:
            load_spec(args.spec)
        except SpecError as e:
            print(str(e), file=sys.stderr)
            return EXIT_SPEC_ERROR
    kinds = args.kinds or list(registry.KINDS)
    unknown = [k for k in kinds if k not in registry.KINDS]
    if unknown:
        return _fail(f"unknown kind {unknown[0]!r};{registry.did_you_mean(unknown[0], list(registry.KINDS))} "
                     f"Choices: {', '.join(registry.KINDS)}", EXIT_SPEC_ERROR)
    for kind in kinds:
        print(f"{kind}: {registry.KINDS[kind][1]}")
        defaults = {registry.default(kind)} if kind in ("task", "method") else set()
        for name in registry.names(kind):
            origin = registry.origin(kind, name)
            print(f"  {name:<24} {origin}" + ("  (default)" if name in defaults else ""))
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

    spec, runner, context = open_run(run_dir, stage)
    trained = [t for t, _ in compared_students(spec) if t in runner.stages]
    if stage not in runner.stages or (stage != "train" and stage not in trained):
        raise SpecError(f"--student {stage}: not a student of {run_dir}; choices: {', '.join(trained)}")
    if not runner.is_finished(stage):
        raise StageError(f"{run_dir}: the {stage} stage is not finished (run: tfkd run SPEC --stages {stage})")
    return spec, runner, context


def cmd_export(args):
    from tfkd import registry
    from tfkd.spec import SpecError

    try:
        import_tensorflow()
        from tfkd.exporters.base import choose_version, directory_size
        from tfkd.stages import load_student

        spec, runner, context = _open_finished_run(args.run_dir, args.student)
        try:  # after the spec's imports, which may register exporters
            exporter = registry.lookup("exporter", args.format or spec.export.format)
        except ValueError as e:
            raise SpecError(f"--format: {e}") from None
        if args.student in (spec.variants or {}):
            context = context.with_spec(spec.variant(args.student))  # decoded with the variant's settings
        out = args.out or os.path.join(args.run_dir, "export")
        name = args.model_name or spec.export.model_name or (
            spec.name if args.student == "train" else f"{spec.name}_{args.student}")
        version = choose_version(out, name, args.version, spec.export.version)
        student = load_student(context, args.student, weights=_weights_file(args.weights))
        path = exporter().export(context, student, os.path.join(out, name), version)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except _run_errors() as e:
        return _fail(str(e), EXIT_RUN_ERROR)
    print(f"exported {path} ({directory_size(path) / 1e6:.1f} MB)")
    return 0


def cmd_average(args):
    from tfkd.spec import SpecError

    try:
        import_tensorflow()
        from tfkd.runner import StageError
        from tfkd.stages import load_student
        from tfkd.training.averaging import CHECKPOINTS_DIR, average_weights, kept_checkpoints, save_weights_atomic

        spec, runner, context = _open_finished_run(args.run_dir, args.stage)
        kept = kept_checkpoints(os.path.join(runner.stage_dir(args.stage), CHECKPOINTS_DIR))
        if not kept:
            raise StageError(f"{args.run_dir}: the {args.stage} stage kept no checkpoints (train it with "
                             "train.keep_last: N)")
        last = args.last or len(kept)
        if last > len(kept):
            raise StageError(f"--last {last}: the {args.stage} stage kept {len(kept)} checkpoints (steps "
                             f"{', '.join(str(step) for step, _ in kept)})")
        chosen = kept[-last:]
        out = args.output or os.path.join(runner.stage_dir(args.stage), CHECKPOINTS_DIR,
                                          f"average-last-{last}.weights.h5")
        student = average_weights(load_student(context, args.stage), [path for _, path in chosen])
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        save_weights_atomic(student, out)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except _run_errors() as e:
        return _fail(str(e), EXIT_RUN_ERROR)
    print(f"averaged steps {', '.join(str(step) for step, _ in chosen)} of {args.stage} into {out} "
          f"(use it with --weights)")
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
        from tfkd.progress import progress_bar

        # length-sorted batches pad least; outputs in input order
        order = sorted(range(len(lines)), key=lambda i: len(lines[i].split()))
        outputs = [None] * len(lines)
        bar = progress_bar(math.ceil(len(lines) / batch_size), "batch")
        for start in range(0, len(lines), batch_size):
            index = order[start : start + batch_size]
            result = serve(**{info["input"]: tf.constant([lines[i] for i in index])})
            for i, output in zip(index, result[info["output"]].numpy()):
                outputs[i] = output.decode("utf-8")
            if bar:
                bar.update(start // batch_size + 1)
        return outputs

    return predict


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
        references = None
        if getattr(args, "reference", None):
            references = _read_input(args.reference)
            if len(references) != len(lines):
                raise SpecError(f"{args.reference}: {len(references)} reference lines for {len(lines)} input lines "
                                f"({args.input or 'stdin'}); give one reference per input line")
        args.set = list(args.set or []) + _decode_flags(args)
        if not os.path.exists(args.model):
            from tfkd.runner import StageError

            raise StageError(f"{args.model}: no such file or directory (give a SavedModel, a TF Serving base path "
                             "or a run directory)")
        import_tensorflow()
        saved_model = _find_saved_model(args.model)
        if saved_model:
            if args.student or args.set or getattr(args, "weights", None) or getattr(args, "nbest", None):
                raise SpecError(f"{args.model}: --student, --set, --nbest and the decoding flags apply to a run "
                                "directory; an export decodes as it was exported")
            info = _saved_model_info(saved_model)
            if continues_text and info and info.get("output") != "continuation":
                raise SpecError(f"{args.model}: a {info.get('task')} model; tfkd generate needs {what} "
                                "(tfkd predict gives any model's predictions)")
            predict = _saved_model_predictor(saved_model, args.batch_size)
            task_name = info.get("task")
            evaluate = None
        else:
            from tfkd.stages import load_student

            spec, _, context = _open_finished_run(args.model, args.student or "train")
            if continues_text and not getattr(context.task, "continues_text", False):
                raise SpecError(f"{args.model}: a {spec.task} run; tfkd generate needs {what} "
                                "(tfkd predict gives any run's predictions)")
            own = spec.variant(args.student) if args.student in (spec.variants or {}) else spec
            own = own.model_copy(update={"decode": _decode_overrides(own.decode, args.set)})
            context = context.with_spec(own)
            student = load_student(context, args.student or "train", _weights_file(getattr(args, "weights", None)))
            if getattr(args, "nbest", None):
                try:
                    predict = context.task.nbest_predictor(context, student, args.nbest)
                except ValueError as e:
                    raise SpecError(f"--nbest {args.nbest}: {e}") from None
                if predict is None:
                    raise SpecError(f"--nbest {args.nbest}: a {spec.task} model gives one output per input")
            else:
                predict = context.task.predictor(context, student)
            task_name, evaluate = spec.task, own.evaluate
        scorer = None
        if references is not None:
            from tfkd import registry

            from tfkd.tasks.base import Task

            task = registry.lookup("task", task_name) if task_name in registry.names("task") else None
            scorer = task and (lambda outputs: task.score_lines(evaluate, outputs, references))
            if task is None or type(task).score_lines is Task.score_lines:  # the task has no such metric
                raise SpecError(f"--reference: a {task_name or 'model of unknown task'}'s outputs have no "
                                "reference metric")
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except _run_errors() as e:
        return _fail(str(e), EXIT_RUN_ERROR)
    # Keras' progress bar writes to stdout: send it to stderr, keep stdout for the output
    with contextlib.redirect_stdout(sys.stderr):
        outputs = predict(lines)
    if getattr(args, "nbest", None):  # INDEX <tab> SCORE <tab> OUTPUT, N lines per input, best first
        text = "".join(f"{i}\t{score:.4f}\t{output}\n" for i, ranked in enumerate(outputs) for output, score in ranked)
        outputs = [ranked[0][0] if ranked else "" for ranked in outputs]  # --reference scores the best
    else:
        text = "".join(o + "\n" for o in outputs)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as sink:
            sink.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if scorer is not None:  # on stderr: stdout stays the outputs
        print(scorer(outputs), file=sys.stderr)
    return 0


def _weights_file(path):
    """``--weights FILE``: the path, checked to exist (``None`` stays ``None``)."""
    if path is not None and not os.path.isfile(path):
        from tfkd.runner import StageError

        raise StageError(f"--weights {path}: no such file")
    return path


# flags of tfkd translate that are shorthands of --set decode.KEY=VALUE
DECODE_FLAGS = {"algorithm": "algorithm", "beam": "beam_size", "length_penalty": "length_penalty"}


def _decode_flags(args):
    return [f"decode.{key}={getattr(args, flag)}" for flag, key in DECODE_FLAGS.items()
            if getattr(args, flag, None) is not None]


def cmd_generate(args):
    from tfkd.spec import SpecError

    try:
        lines = list(args.prompt) if args.prompt else _read_input(args.input)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    return cmd_translate(args, lines, continues_text=True)


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _export_version(text):
    if text != "auto" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}")
    return text if text == "auto" else int(text)


def _version_line():
    """``tfkd X (TensorFlow Y, Keras Z, keras-hub W)``, read from the installed packages'
    metadata (importing TensorFlow to ask would take seconds)."""
    from importlib import metadata

    from tfkd import __version__

    def installed(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (f"tfkd {__version__} (TensorFlow {installed('tensorflow')}, Keras {installed('keras')}, "
            f"keras-hub {installed('keras-hub')}, Python {sys.version.split()[0]})")


STAGES_HELP = """stages (tfkd config SPEC prints a spec's own plan):
  vocab               learn the vocabularies (or take the teacher's)
  <method stages>     what the method adds before the student: a teacher's fine-tuning, its
                      cached outputs, pre-training (tfkd list shows the methods)
  baseline            the same student trained on the references alone, for comparison
  <variant>           each of the spec's variants: the student with a few settings changed
  train               the student, trained by the spec's method
  *_evaluate, evaluate  score a student on evaluate.splits
  export              a TF Serving SavedModel that takes raw text
A finished stage whose inputs are unchanged is skipped; a killed one resumes from its checkpoint."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported in one line (the usage is one --help away)."""

    def error(self, message):
        self.exit(EXIT_SPEC_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    from tfkd.spec import ADAPTERS_EXPORTER

    # -v/-q are read before and after the command: "tfkd -v run ..." and "tfkd run ... -v"
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging and library warnings")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="warnings and errors only; no progress bars")
    parser = _Parser(prog="tfkd", description=__doc__, parents=[common])
    parser.add_argument("--version", action="version", version=_version_line())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_text, description=None, **kwargs):
        return commands.add_parser(name, help=help_text, description=description or help_text, parents=[common],
                                   formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    run = add("run", "run a spec's stages (skipping those already done)", epilog=STAGES_HELP)
    run.add_argument("spec", help="a YAML spec (see the README's spec reference)")
    run.add_argument("--stages", help="comma-separated stages to run, in any order (default: the spec's stages, "
                                      "else its default plan)")
    run.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                     help="override a spec value, e.g. --set train.steps=100 (repeatable)")
    run.set_defaults(func=cmd_run)

    validate = add("validate", "check specs without running anything (no TensorFlow import)")
    validate.add_argument("specs", nargs="+", metavar="SPEC")
    validate.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                          help="override a spec value (repeatable)")
    validate.set_defaults(func=cmd_validate)

    config = add("config", "print a spec resolved (defaults, --set and interpolation applied) and its stage plan",
                 "Print the spec as tfkd runs it (every default filled in, ${VAR} and --set applied) and the "
                 "stages tfkd run would run, with what each needs and whether its run directory already "
                 "holds it. Runs nothing.", epilog=STAGES_HELP)
    config.add_argument("spec")
    config.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a spec value (repeatable)")
    config.add_argument("--stages", help="the plan of these stages instead of the default ones")
    config.set_defaults(func=cmd_config)

    listing = add("list", "list the registered tasks, methods, students, layers, decoders and exporters",
                  "List what specs can name: tasks, methods, students, encoder and decoder layers, adapters, "
                  "decoders, exporters, with the class each name stands for. With --spec, the spec's imports are "
                  "loaded first, so user-registered names show too.")
    listing.add_argument("--spec", help="load this spec's imports first")
    listing.add_argument("kinds", nargs="*", metavar="KIND", help="only these kinds (task, method, student, ...)")
    listing.set_defaults(func=cmd_list)

    export = add("export", "write a TF Serving SavedModel (or another --format) from a run directory")
    export.add_argument("run_dir")
    export.add_argument("--out", help="base directory (default: RUN_DIR/export)")
    export.add_argument("--model-name", help="default: the spec's export.model_name or run name")
    export.add_argument("--version", type=_export_version, metavar="N|auto",
                        help="the version folder to write: a new number, or auto (one more than the newest there; "
                             "default: the spec's export.version). An existing version is never overwritten")
    export.add_argument("--format", metavar="NAME", help="the exporter (tfkd list exporter; default: the spec's "
                        "export.format, saved_model): saved_model writes a SavedModel that takes raw text; adapters "
                        "writes VERSION.adapters.safetensors, only the trained weights and config (a student on "
                        "frozen pretrained models, such as AB-Net)")
    export.add_argument("--adapters-only", dest="format", action="store_const", const=ADAPTERS_EXPORTER,
                        help=f"the same as --format {ADAPTERS_EXPORTER}")
    export.add_argument("--student", "--stage", dest="student", default="train",
                        help="the run's train stage to export (default: train; baseline, a variant's name); its "
                             "default model name is RUN_NAME_STAGE")
    export.add_argument("--weights", metavar="FILE", help="the student's weights from this file (tfkd average's "
                                                          "output) instead of the train stage's")
    export.set_defaults(func=cmd_export)

    average = add("average", "average the last checkpoints a train stage kept (train.keep_last) into a weights file",
                  "Average the student weights of the last N checkpoints a train stage kept (train.keep_last: N) "
                  "element-wise, as fairseq's average_checkpoints.py does, into a weights file that tfkd "
                  "translate --weights and tfkd export --weights read. The stage itself is left as it is.")
    average.add_argument("run_dir")
    average.add_argument("--stage", default="train", help="the train stage (default: train; baseline, a variant)")
    average.add_argument("--last", type=_positive_int, metavar="N", help="how many of the last checkpoints (default: all kept)")
    average.add_argument("-o", "--output", metavar="FILE",
                         help="default: RUN_DIR/STAGE/checkpoints/average-last-N.weights.h5")
    average.set_defaults(func=cmd_average)

    translate = add("translate", "translate (or classify: any task's predictions) lines with an export or a run "
                                 "directory", aliases=["predict"])
    translate.add_argument("model", help="a SavedModel, a TF Serving base path, or a run directory")
    translate.add_argument("-i", "--input", help="input file (default: stdin)")
    translate.add_argument("-o", "--output", help="output file (default: stdout)")
    translate.add_argument("--batch-size", type=_positive_int,
                           help="default: the spec's decode.batch_size (kept in the export)")
    translate.add_argument("--student", "--stage", dest="student",
                           help="a run's train stage to translate with (default: train; baseline; a variant's name "
                                "uses the variant's student and decode settings)")
    translate.add_argument("--weights", metavar="FILE",
                           help="a run's student with these weights (tfkd average's output) instead of the stage's")
    translate.add_argument("--algorithm", help="a run's decoder: greedy, beam, mask_predict (decode.algorithm)")
    translate.add_argument("--beam", type=int, metavar="N", help="a run's beam size (decode.beam_size)")
    translate.add_argument("--length-penalty", type=float, metavar="ALPHA",
                           help="a run's beam length penalty (decode.length_penalty)")
    translate.add_argument("--nbest", type=_positive_int, metavar="N",
                           help="a run's N best hypotheses per input (beam: N <= beam size; mask_predict: N <= "
                                "length candidates), printed as INDEX<tab>SCORE<tab>TEXT lines, best first")
    translate.add_argument("--reference", metavar="FILE",
                           help="reference lines, one per input line: print the task's metric (sacreBLEU for "
                                "translation, with its signature) on stderr")
    translate.add_argument("--set", action="append", metavar="decode.KEY=VALUE",
                           help="change a decoding setting of a run (e.g. decode.iterations=4, decode.beam_size=5)")
    translate.set_defaults(func=cmd_translate)

    generate = add("generate", "continue text with a language model (an export or a run directory): one "
                               "continuation per prompt")
    generate.add_argument("model", help="a SavedModel, a TF Serving base path, or a language-model run directory")
    generate.add_argument("--prompt", action="append", help="a prompt (repeatable; default: one per line of "
                                                            "--input or stdin)")
    generate.add_argument("-i", "--input", help="prompts file, one a line (default: stdin)")
    generate.add_argument("-o", "--output", help="output file (default: stdout)")
    generate.add_argument("--batch-size", type=_positive_int, help="default: the spec's decode.batch_size")
    generate.add_argument("--student", help="a run's train stage to generate with (default: train)")
    generate.add_argument("--set", action="append", metavar="decode.KEY=VALUE",
                          help="change a sampling setting of a run (decode.sampler=top_p, decode.top_p=0.9, "
                               "decode.max_new_tokens=64, decode.seed=1)")
    generate.set_defaults(func=cmd_generate)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    if verbose and quiet:
        return _fail("-v/--verbose and -q/--quiet contradict each other; give one", EXIT_SPEC_ERROR)
    if quiet:
        from tfkd.progress import QUIET_ENV

        os.environ[QUIET_ENV] = "1"
    _setup_logging(verbose, quiet)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
