"""``tfkd list [KIND...]``: the names a spec can use (tasks, methods, students, layers,
decoders) and the class each stands for. (Not ``list.py``: the package would then have a
``list`` attribute hiding the builtin.)"""

from tfkd.cli.errors import EXIT_SPEC_ERROR, fail, reports_errors
from tfkd.cli.startup import load_spec


def register(add):
    listing = add(
        "list",
        "list the registered tasks, methods, students, layers, decoders and exporters",
        "List what specs can name: tasks, methods, students, encoder and decoder layers, adapters, "
        "decoders, exporters, with the class each name stands for. With --spec, the spec's imports are "
        "loaded first, so user-registered names show too.",
    )
    listing.add_argument("--spec", help="load this spec's imports first")
    listing.add_argument("kinds", nargs="*", metavar="KIND", help="only these kinds (task, method, student, ...)")
    listing.set_defaults(func=cmd_list)


@reports_errors
def cmd_list(args):
    from tfkd import registry

    if args.spec:
        load_spec(args.spec)
    kinds = args.kinds or list(registry.KINDS)
    unknown = [k for k in kinds if k not in registry.KINDS]
    if unknown:
        return fail(
            f"unknown kind {unknown[0]!r};{registry.did_you_mean(unknown[0], list(registry.KINDS))} "
            f"Choices: {', '.join(registry.KINDS)}",
            EXIT_SPEC_ERROR,
        )
    for kind in kinds:
        print(f"{kind}: {registry.KINDS[kind][1]}")
        defaults = {registry.default(kind)} if kind in ("task", "method") else set()
        for name in registry.names(kind):
            origin = registry.origin(kind, name)
            print(f"  {name:<24} {origin}" + ("  (default)" if name in defaults else ""))
    return 0
