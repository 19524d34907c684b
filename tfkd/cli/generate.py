"""``tfkd generate``: continuations of prompts by a language model (an export or a run
directory), one per prompt; :func:`tfkd.cli.translate.predict_lines` for models that continue
text."""

from tfkd.cli.arguments import positive_int
from tfkd.cli.errors import reports_errors
from tfkd.cli.translate import predict_lines, read_input


def register(add):
    generate = add(
        "generate", "continue text with a language model (an export or a run directory): one continuation per prompt"
    )
    generate.add_argument("model", help="a SavedModel, a TF Serving base path, or a language-model run directory")
    generate.add_argument(
        "--prompt", action="append", help="a prompt (repeatable; default: one per line of --input or stdin)"
    )
    generate.add_argument("-i", "--input", help="prompts file, one a line (default: stdin)")
    generate.add_argument("-o", "--output", help="output file (default: stdout)")
    generate.add_argument("--batch-size", type=positive_int, help="default: the spec's decode.batch_size")
    generate.add_argument("--student", help="a run's train stage to generate with (default: train)")
    generate.add_argument(
        "--set",
        action="append",
        metavar="decode.KEY=VALUE",
        help="change a sampling setting of a run (decode.sampler=top_p, decode.top_p=0.9, "
        "decode.max_new_tokens=64, decode.seed=1)",
    )
    generate.set_defaults(func=cmd_generate)


@reports_errors
def cmd_generate(args):
    lines = list(args.prompt) if args.prompt else read_input(args.input)
    return predict_lines(args, lines, continues_text=True)
