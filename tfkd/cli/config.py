"""``tfkd config SPEC``: the spec as tfkd runs it and its stage plan, with the state of each
stage in the run directory. Runs nothing."""

import os

from tfkd.cli.arguments import STAGES_HELP
from tfkd.cli.errors import reports_errors, run_errors
from tfkd.cli.runs import spec_and_stages
from tfkd.cli.startup import import_tensorflow


def register(add):
    config = add(
        "config",
        "print a spec resolved (defaults, --set and interpolation applied) and its stage plan",
        "Print the spec as tfkd runs it (every default filled in, ${VAR} and --set applied) and the "
        "stages tfkd run would run, with what each needs and whether its run directory already "
        "holds it. Runs nothing.",
        epilog=STAGES_HELP,
    )
    config.add_argument("spec")
    config.add_argument(
        "--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a spec value (repeatable)"
    )
    config.add_argument("--stages", help="the plan of these stages instead of the default ones")
    config.set_defaults(func=cmd_config)


@reports_errors
def cmd_config(args):
    import yaml

    from tfkd.plan import plan_run

    spec, planned = spec_and_stages(args)
    print(f"# {args.spec}, resolved" + (f" with {' '.join('--set ' + a for a in args.set)}" if args.set else ""))
    print(yaml.safe_dump(resolved_dict(spec), sort_keys=False).rstrip())
    print(f"# stage plan: tfkd run runs these in this order into {os.path.join(spec.run_dir, spec.name)}")
    for name, (needs, state) in stage_plan(spec, planned).items():
        print(f"#   {name:<24} {state:<10} needs: {', '.join(needs) or '-'}")
    others = [n for n in plan_run(spec).names if n not in planned]
    if others:
        print(f"# also available with --stages: {', '.join(others)}")
    return 0


def resolved_dict(spec):
    """The spec as a dict with what it leaves to defaults written out: ``run_dir`` absolute,
    and the student's (and each variant's student's) settings filled from its registered
    schema."""
    from tfkd import registry

    def filled(ref):
        if not isinstance(ref, dict) or "kind" not in ref:
            return ref
        schema = registry.schema("student", ref["kind"]) if ref["kind"] in registry.names("student") else None
        if schema is None:  # a user's student without a schema: its arguments as given
            return ref
        settings = {k: v for k, v in ref.items() if k != "kind"}
        return {"kind": ref["kind"], **schema.model_validate(settings).model_dump(mode="json")}

    resolved = spec.to_dict()
    resolved["run_dir"] = os.path.abspath(resolved["run_dir"])
    resolved["student"] = filled(resolved.get("student"))
    for variant in (resolved.get("variants") or {}).values():
        if isinstance(variant, dict) and isinstance(variant.get("student"), dict):
            variant["student"] = filled(variant["student"])
    return resolved


def stage_plan(spec, planned):
    """``{stage: (dependencies, state)}``: state ``done`` (its run directory holds it with these
    inputs), ``changed`` (it holds it, made from other inputs: it runs again), ``stored`` (the
    stage store, ``TFKD_STAGE_STORE``, holds it: it is copied), ``to run``, or why its inputs
    cannot be read yet."""
    from tfkd.plan import plan_run
    from tfkd.runner import MARKER, Runner

    runner = Runner(spec, plan_run(spec))
    if os.path.isdir(runner.run_dir) or runner.store is not None:
        import_tensorflow()  # a stage's key is read from its stage object, whose module imports Keras
    plan = {}
    for name in planned:
        needs = list(runner.plan.dependencies(name))
        try:
            state = "done" if runner.is_done(name) else "changed" if runner.is_finished(name) else "to run"
            if state != "done" and runner.store is not None and runner.store.marker(runner.key(name), MARKER):
                state = "stored"
        except run_errors() as e:
            state = f"inputs missing ({e})"
        plan[name] = (needs, state)
    return plan
