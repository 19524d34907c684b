"""The ``tfkd`` command: ``run``, ``validate``, ``export``, ``translate``."""

import argparse
import contextlib
import logging
import os
import sys

EXIT_SPEC_ERROR = 2
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


def _fail(message, code):
    print(f"tfkd: error: {message}", file=sys.stderr)
    return code


def cmd_validate(args):
    from tfkd.spec import SpecError, load_spec

    status = 0
    for path in args.specs:
        try:
            load_spec(path, args.set)
            print(f"{path}: ok")
        except SpecError as e:
            print(str(e), file=sys.stderr)
            status = EXIT_SPEC_ERROR
    return status


def cmd_run(args):
    from tfkd.data import DataError
    from tfkd.runner import Runner, StageError
    from tfkd.spec import STAGES, SpecError, load_spec
    from tfkd.stages import RunContext, default_stages

    try:
        spec = load_spec(args.spec, args.set)
        stages = spec.stages
        if args.stages:
            stages = [s.strip() for s in args.stages.split(",") if s.strip()]
            unknown = [s for s in stages if s not in STAGES]
            if unknown:
                raise SpecError(f"--stages: unknown stage {unknown[0]!r}; choices: {', '.join(STAGES)}")
        runner = Runner(spec, default_stages())
        results = runner.run(stages, RunContext(spec, runner))
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except (DataError, StageError) as e:
        return _fail(str(e), EXIT_RUN_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted; finished stages and the last checkpoint are kept", 130)
    for stage in ("baseline_evaluate", "evaluate"):
        for split, scores in (results.get(stage) or {}).items():
            if isinstance(scores, dict) and "bleu" in scores:
                who = "baseline" if stage == "baseline_evaluate" else "student"
                print(f"{spec.name}: {who} {split} BLEU {scores['bleu']:.2f} ({scores['signature']})")
    if "baseline_evaluate" in results and "evaluate" in results:
        print(comparison_table(spec, results))
    return 0


def comparison_table(spec, results):
    """Baseline against distilled student: BLEU per split, steps, wall time of each stage."""
    splits = [s for s in spec.evaluate.splits if s in results["evaluate"]]
    header = ["student", *[f"{s} BLEU" for s in splits], "steps", "train s", "teacher s"]
    teacher_seconds = sum((results.get(s) or {}).get("seconds", 0) for s in ("teacher_finetune", "teacher_cache"))
    rows = []
    for label, train, evaluate, teacher in (("baseline", "baseline", "baseline_evaluate", "-"),
                                            (f"{spec.distill.method} (alpha={spec.distill.alpha})" if spec.distill
                                             else "student", "train", "evaluate", f"{teacher_seconds:.0f}")):
        rows.append([label, *[f"{results[evaluate][s]['bleu']:.2f}" for s in splits],
                     str(results[train].get("steps", "?")), f"{results[train].get('seconds', 0):.0f}", teacher])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def cmd_export(args):
    from tfkd.export import directory_size, export_saved_model
    from tfkd.runner import StageError
    from tfkd.spec import SpecError
    from tfkd.stages import make_translator, open_run

    try:
        spec, runner, context = open_run(args.run_dir)
        if not runner.is_done("train"):
            raise StageError(f"{args.run_dir}: the train stage is not finished; nothing to export")
        out = args.out or os.path.join(args.run_dir, "export")
        path = export_saved_model(make_translator(context), out, args.model_name or spec.export.model_name
                                  or spec.name, args.version or spec.export.version)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    except StageError as e:
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


def cmd_translate(args):
    import tensorflow as tf

    from tfkd.spec import SpecError

    source = open(args.input, encoding="utf-8") if args.input else sys.stdin
    sentences = [line.rstrip("\n") for line in source]
    saved_model = _find_saved_model(args.model)
    try:
        if saved_model:
            import tensorflow_text  # noqa: F401  (registers the ops the graph uses)

            serve = tf.saved_model.load(saved_model).signatures["serving_default"]

            def translate(batch):
                return serve(source=batch)

            batch_size = args.batch_size or 64
        else:
            from tfkd.stages import make_translator, open_run

            _, _, context = open_run(args.model)
            translator = make_translator(context)
            translate = translator.translate
            batch_size = args.batch_size or translator.batch_size
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return EXIT_SPEC_ERROR
    from tfkd.inference import translate_in_batches

    # Keras' progress bar writes to stdout: send it to stderr, keep stdout for translations
    with contextlib.redirect_stdout(sys.stderr):
        outputs, _ = translate_in_batches(translate, sentences, batch_size, progress=True)
    sink = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    sink.write("".join(o + "\n" for o in outputs))
    sink.flush()
    return 0


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
    export.set_defaults(func=cmd_export)

    translate = commands.add_parser("translate", help="translate lines with an export or a run directory")
    translate.add_argument("model", help="a SavedModel, a TF Serving base path, or a run directory")
    translate.add_argument("-i", "--input", help="input file (default: stdin)")
    translate.add_argument("-o", "--output", help="output file (default: stdout)")
    translate.add_argument("--batch-size", type=int)
    translate.set_defaults(func=cmd_translate)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
