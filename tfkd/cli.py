"""The ``tfkd`` command: ``run``, ``validate``."""

import argparse
import logging
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
    evaluation = results.get("evaluate") or {}
    for split, scores in evaluation.items():
        if isinstance(scores, dict) and "bleu" in scores:
            print(f"{spec.name}: {split} BLEU {scores['bleu']:.2f} ({scores['signature']})")
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
