"""``sweep``: a grid of settings expanded into variants (one per combination), the best student
chosen on the validation split by the ``select`` stage (:mod:`tfkd.selection`).

    sweep:
      grid:
        distill.alpha: [0.25, 0.5, 0.75]
        distill.mask_rate: [0.15, 0.3]

gives the variants ``alpha0.25-mask_rate0.15``, ``alpha0.25-mask_rate0.3``, ... except the
combination that is the spec's own settings, which is its ``train`` stage. Importing this does
not import TensorFlow."""

import itertools
import json
import re

from tfkd.spec.variants import VARIANT_ROOTS


def _value_name(value):
    text = json.dumps(value) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_") or "none"


def point_name(grid_keys, values):
    """A combination's variant name: each key's last part and its value, joined by ``-``."""
    return "-".join(f"{key.split('.')[-1]}{_value_name(value)}" for key, value in zip(grid_keys, values, strict=True))


def expand_sweep(data, located):
    """Add one variant per combination of ``data["sweep"]["grid"]`` to ``data["variants"]``;
    the names added. A mistake in the grid is a one-line error at its line."""
    sweep = data.get("sweep")
    if not isinstance(sweep, dict) or not isinstance(sweep.get("grid"), dict) or not sweep["grid"]:
        return []  # the schema says what is wrong
    grid = sweep["grid"]
    for key, values in grid.items():
        parts = str(key).split(".")
        if parts[0] not in VARIANT_ROOTS or not all(parts):
            raise located.error(
                ("sweep", "grid", key),
                f"expected a key under {', '.join(VARIANT_ROOTS)} (data, teacher and evaluation are the run's)",
            )
        if not isinstance(values, list) or len(values) < 1:
            raise located.error(("sweep", "grid", key), "expected a list of values to try, e.g. [0.25, 0.5, 0.75]")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise located.error(("sweep", "grid", key), f"expected different values, got {json.dumps(values)}")
    keys = list(grid)
    points = list(itertools.product(*(grid[k] for k in keys)))
    if len(points) < 2:
        raise located.error(("sweep", "grid"), "expected at least two settings to choose from")
    variants = data.get("variants") or {}
    if not isinstance(variants, dict):
        return []
    names = []
    for values in points:
        name = point_name(keys, values)
        point = dict(zip(keys, values, strict=True))
        # the point itself, as the spec.yaml of a sweep run written before the grid stayed in its
        # sweep section holds it, is the same student
        if name in variants and variants[name] != point:
            raise located.error(("variants", name), f"the sweep names a student {name} too; rename this variant")
        variants[name] = point
        names.append(name)
    data["variants"] = variants
    return names


def drop_the_specs_own_point(spec, names):
    """The swept variants, without the one whose settings are the spec's own (its student is
    ``train``); ``spec`` keeps the others."""
    sections = ("distill", "student", "train", "decode")

    def settings(s):
        return {k: s.model_dump(mode="json", by_alias=True)[k] for k in sections}

    own = settings(spec)
    same = [n for n in names if settings(spec._variants[n]) == own]
    if same:
        kept = {k: v for k, v in spec.variants.items() if k not in same}
        resolved = {k: v for k, v in spec._variants.items() if k not in same}
        spec = spec.model_copy(update={"variants": kept or None})
        spec._variants, spec._plan = resolved, None
    spec._swept = [n for n in names if n not in same]
    return spec


__all__ = ["drop_the_specs_own_point", "expand_sweep", "point_name"]
