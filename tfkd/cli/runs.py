"""What the commands that read a spec or a run directory share: a spec and its requested
stages, a run whose student finished, a ``--weights`` file."""

import os

from tfkd.cli.startup import load_spec
from tfkd.pipeline import open_finished_run

__all__ = ["open_finished_run", "spec_and_stages", "weights_file"]


def spec_and_stages(args):
    """``(spec, stages)`` of ``SPEC [--set ...] [--stages ...]``; SpecError on a mistake."""
    from tfkd.pipeline import requested_stages

    spec = load_spec(args.spec, args.set)
    names = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    return spec, requested_stages(spec, names)


def weights_file(path):
    """``--weights FILE``: the path, checked to exist (``None`` stays ``None``)."""
    if path is not None and not os.path.isfile(path):
        from tfkd.errors import StageError

        raise StageError(f"--weights {path}: no such file")
    return path
