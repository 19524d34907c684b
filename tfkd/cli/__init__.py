"""The ``tfkd`` command: ``run``, ``validate``, ``export``, ``translate``, ``report``, ..."""

import argparse
import os
import sys

from tfkd.cli import average, compare, config, export, generate, listing, report, run, translate, validate
from tfkd.cli.arguments import STAGES_HELP, Parser
from tfkd.cli.average import cmd_average
from tfkd.cli.config import cmd_config
from tfkd.cli.errors import EXIT_INTERRUPTED, EXIT_RUN_ERROR, EXIT_SPEC_ERROR, fail
from tfkd.cli.export import cmd_export
from tfkd.cli.generate import cmd_generate
from tfkd.cli.listing import cmd_list
from tfkd.cli.report import cmd_report
from tfkd.cli.run import cmd_run
from tfkd.cli.startup import import_tensorflow, load_spec, setup_logging
from tfkd.cli.translate import DECODE_FLAGS, cmd_translate
from tfkd.cli.validate import cmd_validate
from tfkd.comparison import compared_students, comparison_table
from tfkd.serving import SAVED_MODEL_BATCH_SIZE

DESCRIPTION = (
    "Distil pretrained language models (BERT, GPT-2, MASS/BART-style) into fast translation, "
    "classification and language-model students. A run is one YAML spec: tfkd run SPEC trains, "
    "scores and exports it."
)
# the commands in the order --help lists them; each module registers its subparser and handler
COMMANDS = (run, validate, config, listing, export, average, translate, generate, report, compare)


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

    return (
        f"tfkd {__version__} (TensorFlow {installed('tensorflow')}, Keras {installed('keras')}, "
        f"keras-hub {installed('keras-hub')}, Python {sys.version.split()[0]})"
    )


def build_parser():
    # -v/-q are read before and after the command: "tfkd -v run ..." and "tfkd run ... -v"
    common = Parser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging and library warnings"
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="warnings and errors only; no progress bars",
    )
    parser = Parser(
        prog="tfkd",
        description=DESCRIPTION,
        epilog="'tfkd COMMAND --help' gives a command's options; the README and docs/ have the rest.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=_version_line())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_text, description=None, **kwargs):
        return commands.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kwargs,
        )

    for command in COMMANDS:
        command.register(add)
    return parser


# environment variables that name folders: a relative one is taken against the folder the
# command was typed in, once, so that it means the same in every process the run starts
PATH_VARIABLES = ("TFKD_DATA_DIR",)


def absolute_path_variables(environ=os.environ):
    for name in PATH_VARIABLES:
        if environ.get(name) and not os.path.isabs(environ[name]):
            environ[name] = os.path.abspath(environ[name])


def main(argv=None):
    absolute_path_variables()
    args = build_parser().parse_args(argv)
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    if verbose and quiet:
        return fail("-v/--verbose and -q/--quiet contradict each other; give one", EXIT_SPEC_ERROR)
    if quiet:
        from tfkd.progress import QUIET_ENV

        os.environ[QUIET_ENV] = "1"
    setup_logging(verbose, quiet)
    from tfkd import stopping

    try:
        code = args.func(args)
    except KeyboardInterrupt:  # a command without its own message (tfkd run has one)
        return fail("interrupted", EXIT_INTERRUPTED)
    if stopping.stopped_by() is not None and argv is None:  # the process's own command line
        stopping.exit_after_stop(code)
    return code


# the handlers and the names tfkd.cli had before it became a package stay importable from here
__all__ = [
    "DECODE_FLAGS",
    "EXIT_RUN_ERROR",
    "EXIT_SPEC_ERROR",
    "SAVED_MODEL_BATCH_SIZE",
    "STAGES_HELP",
    "build_parser",
    "cmd_average",
    "cmd_config",
    "cmd_export",
    "cmd_generate",
    "cmd_list",
    "cmd_report",
    "cmd_run",
    "cmd_translate",
    "cmd_validate",
    "compared_students",
    "comparison_table",
    "import_tensorflow",
    "load_spec",
    "main",
]
