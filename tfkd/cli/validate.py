"""``tfkd validate SPEC...``: check specs without running anything (no TensorFlow import)."""

from tfkd.cli.errors import reports_errors
from tfkd.cli.startup import load_spec


def register(add):
    validate = add("validate", "check specs without running anything (no TensorFlow import)")
    validate.add_argument("specs", nargs="+", metavar="SPEC")
    validate.add_argument(
        "--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a spec value (repeatable)"
    )
    validate.set_defaults(func=cmd_validate)


def cmd_validate(args):
    """Every spec is checked, also after one with mistakes; the status is the worst one's."""
    return max(_validate(path, args.set) for path in args.specs)


@reports_errors
def _validate(path, overrides):
    load_spec(path, overrides)
    print(f"{path}: ok")
    return 0
