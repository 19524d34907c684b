"""What changed in a stage's inputs since its work was written: the spec keys of its config,
the stages it reads, its input files (:meth:`tfkd.runner.Runner.key_inputs` gives what a key
hashes; each stage folder keeps the inputs it was made from in ``INPUTS.json``).

The runner logs these whenever a stage runs again, and goes on from a stage's earlier work
(a killed run's ``.partial`` folder, or a finished stage, as fairseq and OpenNMT-tf continue a
longer schedule) when only keys the stage lists as resumable changed."""

import json
import os

INPUTS_FILE = "INPUTS.json"  # in a stage's folder: what its key hashed, to tell which inputs changed


def read_inputs(folder):
    """The inputs ``folder`` (a stage's folder or its ``.partial``) was made from, or ``None``
    when it does not record them."""
    try:
        with open(os.path.join(folder, INPUTS_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def as_json(inputs):
    """``inputs`` as they read back from ``INPUTS.json`` (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(inputs, default=str))


def changed_keys(old, new, prefix=""):
    """Dotted paths of the leaves in which two configs differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        changed = []
        for k in sorted(set(old) | set(new)):
            changed += changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return changed
    return [] if old == new else [prefix.rstrip(".")]


def _leaf(config, dotted):
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return "(unset)"
        config = config[part]
    text = json.dumps(config, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def describe(previous, current):
    """What differs between two recorded inputs, for the log: ``train.steps 1000 -> 2000;
    the output of stage vocab; an input file``."""
    if previous is None:
        return "its inputs changed (its folder does not record which)"
    current = as_json(current)
    parts = [
        f"{key} {_leaf(previous.get('config'), key)} -> {_leaf(current['config'], key)}"
        for key in changed_keys(previous.get("config"), current["config"])
    ]
    old_upstream, new_upstream = previous.get("upstream") or {}, current["upstream"]
    for stage in sorted(set(old_upstream) | set(new_upstream)):
        if old_upstream.get(stage) != new_upstream.get(stage):
            parts.append(f"the output of stage {stage}")
    if previous.get("files") != current["files"]:
        parts.append("an input file")
    return "; ".join(parts) or "nothing it records (its key's format changed)"


def resumable_changes(previous, current, resumable):
    """The spec keys in which ``current`` differs from ``previous`` when work made from
    ``previous`` can go on with them (only config keys changed, all of them listed in
    ``resumable``); else ``[]``."""
    if previous is None:
        return []
    current = as_json(current)
    if {k: v for k, v in previous.items() if k != "config"} != {k: v for k, v in current.items() if k != "config"}:
        return []
    changed = changed_keys(previous.get("config"), current["config"])
    return changed if changed and all(k in set(resumable) for k in changed) else []


__all__ = ["INPUTS_FILE", "as_json", "changed_keys", "describe", "read_inputs", "resumable_changes"]
