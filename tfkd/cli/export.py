"""``tfkd export RUN_DIR``: a TF Serving SavedModel (or the adapters' weights) of a run's
student."""

import os

from tfkd import registry
from tfkd.cli.arguments import export_version
from tfkd.cli.errors import reports_errors
from tfkd.cli.runs import open_finished_run, weights_file
from tfkd.cli.startup import import_tensorflow
from tfkd.errors import SpecError
from tfkd.spec import ADAPTERS_EXPORTER


def register(add):
    export = add("export", "write a TF Serving SavedModel (or another --format) from a run directory")
    export.add_argument("run_dir")
    export.add_argument("--out", help="base directory (default: RUN_DIR/export)")
    export.add_argument("--model-name", help="default: the spec's export.model_name or run name")
    export.add_argument(
        "--version",
        type=export_version,
        metavar="N|auto",
        help="the version folder to write: a new number, or auto (one more than the newest there; "
        "default: the spec's export.version). An existing version is never overwritten",
    )
    export.add_argument(
        "--format",
        metavar="NAME",
        help="the exporter (tfkd list exporter; default: the spec's "
        "export.format, saved_model): saved_model writes a SavedModel that takes raw text; adapters "
        "writes VERSION.adapters.safetensors, only the trained weights and config (a student on "
        "frozen pretrained models, such as AB-Net); ctranslate2 writes VERSION.ctranslate2/, a CTranslate2 "
        "model of a Transformer translation or GPT-2 student (pip install tfkd[ctranslate2])",
    )
    export.add_argument(
        "--quantization",
        metavar="TYPE",
        help="--format ctranslate2: the weights' type (int8, int8_float32, int16, float16, bfloat16, "
        "float32; default: the spec's export.quantization, else float32)",
    )
    export.add_argument(
        "--adapters-only",
        dest="format",
        action="store_const",
        const=ADAPTERS_EXPORTER,
        help=f"the same as --format {ADAPTERS_EXPORTER}",
    )
    export.add_argument(
        "--student",
        "--stage",
        dest="student",
        default="train",
        help="the run's train stage to export (default: train; baseline, a variant's name); its "
        "default model name is RUN_NAME_STAGE",
    )
    export.add_argument(
        "--weights",
        metavar="FILE",
        help="the student's weights from this file (tfkd average's output) instead of the train stage's",
    )
    export.add_argument(
        "--set",
        action="append",
        metavar="decode.KEY=VALUE",
        help="the decoding the export carries, where not the run's (e.g. decode.jit_compile=true: "
        "the decoder one XLA program per batch size and source bucket, fastest for single lines; "
        "decode.beam_size=5)",
    )
    export.set_defaults(func=cmd_export)


@reports_errors
def cmd_export(args):
    import_tensorflow()
    from tfkd.run_lock import hold_if_inside

    spec, _, context = open_finished_run(args.run_dir, args.student)
    try:  # after the spec's imports, which may register exporters
        exporter = registry.lookup("exporter", args.format or spec.export.format)
    except ValueError as e:
        raise SpecError(f"--format: {e}") from None
    if args.student in (spec.variants or {}):
        context = context.with_spec(spec.variant(args.student))  # decoded with the variant's settings
    context = context.with_spec(_with_export_flags(context.spec, exporter.name, args.quantization))
    if args.set:
        from tfkd.cli.translate import decode_overrides

        decode = decode_overrides(context.spec.decode, args.set, command="export")
        context = context.with_spec(context.spec.model_copy(update={"decode": decode}))
    out = args.out or os.path.join(args.run_dir, "export")
    with hold_if_inside(args.run_dir, out):  # one writer per run directory
        return _export(args, spec, context, exporter, out)


def _with_export_flags(spec, format_name, quantization):
    """``spec`` whose ``export`` section has the format (and quantization) the flags chose."""
    import pydantic

    from tfkd.spec import ExportSpec

    settings = spec.export.model_dump() | {"format": format_name}
    if quantization is not None:
        settings["quantization"] = quantization
    elif format_name != spec.export.format:
        settings["quantization"] = None  # the spec's applies to its own format
    try:
        export = ExportSpec.model_validate(settings)
    except pydantic.ValidationError as e:
        error = e.errors()[0]
        raise SpecError(f"--{error['loc'][0]}: {error['msg'].removeprefix('Value error, ')}") from None
    return spec.model_copy(update={"export": export})


def _export(args, spec, context, exporter, out):
    from tfkd.exporters.base import choose_version, directory_size
    from tfkd.stages import load_student

    name = args.model_name or spec.export.model_name
    if not name:  # the spec's name, not the run folder's (it may have been renamed)
        run_name = spec_name(args.run_dir)
        name = run_name if args.student == "train" else f"{run_name}_{args.student}"
    version = choose_version(out, name, args.version, spec.export.version)
    student = load_student(context, args.student, weights=weights_file(args.weights))
    path = exporter().export(context, student, os.path.join(out, name), version)
    print(f"exported {path} ({directory_size(path) / 1e6:.1f} MB)")
    return 0


def spec_name(run_dir):
    """The ``name`` of the spec a run directory was made with (its folder may have moved or
    been renamed since)."""
    import yaml

    from tfkd.runner import SPEC_FILE

    with open(os.path.join(run_dir, SPEC_FILE), encoding="utf-8") as f:
        return yaml.safe_load(f)["name"]
