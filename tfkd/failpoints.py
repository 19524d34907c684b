"""Named moments at which a test can kill tfkd, to check that a run killed there resumes.

``TFKD_KILL_AT=NAME[:N][/STAGE][@SIGNAL]`` makes the process send itself SIGKILL (or
``SIGTERM`` / ``SIGINT``: a graceful stop, :mod:`tfkd.stopping`) the N-th time (default the
first) it passes the point ``NAME``, counting only the passes inside stage ``STAGE`` when one is
named (a resumed earlier stage then cannot take the kill). Without the variable a point costs
one dictionary lookup. The points: ``stage-start:<stage>`` (its partial folder and key written,
nothing else), ``stage-finishing:<stage>`` (its marker written, the folder not yet renamed),
``weights-written`` (a weights file written beside its target, not yet renamed into place:
inside a checkpoint write) and ``cache-example`` (one more example added to a teacher cache
shard: inside a shard write). ``tests/kill_anywhere.py`` kills a run at each.
"""

import os
import signal

_passes = {}
_stage = []  # the stage this process is running, from its last stage-start pass


def failpoint(name):
    """Kill this process if ``TFKD_KILL_AT`` names this pass through ``name``."""
    wanted = os.environ.get("TFKD_KILL_AT")
    if not wanted:
        return
    if name.startswith("stage-start:"):
        _stage[:] = [name.partition(":")[2]]
    wanted, at, signal_name = wanted.partition("@")
    wanted, slash, stage = wanted.partition("/")
    if slash and _stage != [stage]:
        return
    target, colon, count = wanted.rpartition(":")
    if not (colon and count.isdigit()):  # no count: the first pass
        target, count = wanted, "1"
    if target != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == int(count):
        os.kill(os.getpid(), signal.Signals[signal_name] if at else signal.SIGKILL)
