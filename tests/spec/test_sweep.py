"""``sweep``: a grid expanded into variants named after their values, the spec's own
combination left to its ``train`` stage, mistakes reported at their line."""

import os

import pytest
from helpers import REPO

from tfkd.errors import SpecError
from tfkd.plan import plan_run, swept_variants
from tfkd.spec import load_spec
from tfkd.spec.sweep import point_name

QUICKSTART = os.path.join(REPO, "specs", "quickstart.yaml")


def test_point_names_say_the_values():
    assert point_name(["distill.alpha"], [0.25]) == "alpha0.25"
    assert point_name(["distill.alpha", "distill.gate"], [0.5, "none"]) == "alpha0.5-gatenone"
    assert point_name(["train.deterministic"], [True]) == "deterministictrue"


def test_the_grid_becomes_variants_and_the_specs_own_point_is_its_train_stage(data_dir):
    # the quickstart's alpha is 0.1: that point is its train stage
    spec = load_spec(QUICKSTART, ["sweep={grid: {distill.alpha: [0.1, 0.5], train.label_smoothing: [0.1, 0.0]}}"])
    assert swept_variants(spec) == [
        "alpha0.1-label_smoothing0.0",
        "alpha0.5-label_smoothing0.1",
        "alpha0.5-label_smoothing0.0",
    ]
    assert spec.variant("alpha0.5-label_smoothing0.0").distill.alpha == 0.5
    assert spec.variant("alpha0.5-label_smoothing0.0").train.label_smoothing == 0.0
    plan = plan_run(spec)
    select = plan["select"]
    assert set(select.depends) == {"evaluate", *(f"{n}_evaluate" for n in swept_variants(spec))}
    # candidates are scored on valid alone, whatever evaluate.splits says; the baseline on every split
    for name in ("evaluate", "alpha0.5-label_smoothing0.1_evaluate"):
        assert plan[name].kwargs["splits"] == ["valid"]
    assert "splits" not in plan["baseline_evaluate"].kwargs
    # the spec lists its stages: train brings the sweep's students, evaluate brings select
    assert {"alpha0.5-label_smoothing0.1", "select"} <= set(plan.requested(spec=spec))


def test_a_swept_spec_written_back_loads_as_it_was(data_dir, tmp_path):
    """A run's spec.yaml (and tfkd config's output) keeps the grid in ``sweep``: loading it
    expands the grid again, next to the spec's own variants (written expanded, a sweep run's
    spec.yaml failed to load: "the sweep names a student alpha0.25 too")."""
    from tfkd.spec import dump_spec

    overrides = ["sweep={grid: {distill.alpha: [0.1, 0.3, 0.5]}}", "variants={ls0: {train.label_smoothing: 0.0}}"]
    spec = load_spec(QUICKSTART, overrides)
    dump_spec(spec, tmp_path / "spec.yaml")
    again = load_spec(str(tmp_path / "spec.yaml"))
    assert swept_variants(again) == swept_variants(spec) == ["alpha0.3", "alpha0.5"]
    assert sorted(again.variants) == sorted(spec.variants) == ["alpha0.3", "alpha0.5", "ls0"]
    assert again.variant("alpha0.3").distill.alpha == 0.3 and again.variant("ls0").train.label_smoothing == 0.0
    # a spec.yaml that lists the grid's points among its variants too (written so before) is
    # the same spec; a variant of the grid's name with other settings is a mistake
    grid = overrides[0]
    expanded = load_spec(
        QUICKSTART, [grid, "variants={ls0: {train.label_smoothing: 0.0}, alpha0.3: {distill.alpha: 0.3}}"]
    )
    assert swept_variants(expanded) == ["alpha0.3", "alpha0.5"]
    with pytest.raises(SpecError, match=r"variants.alpha0.3: the sweep names a student alpha0.3 too"):
        load_spec(QUICKSTART, [grid, "variants={alpha0.3: {distill.alpha: 0.7}}"])


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("{grid: {data.train_limit: [1, 2]}}", r"sweep.grid.data.train_limit: expected a key under distill"),
        ("{grid: {distill.alpha: 0.5}}", r"expected a list of values to try"),
        ("{grid: {distill.alpha: [0.5, 0.5]}}", r"expected different values"),
        ("{grid: {distill.alpha: [0.5]}}", r"sweep.grid: expected at least two settings"),
        ("{grid: {distill.alpha: [0.5, 2.0]}}", r"sweep: student alpha2.0: distill.alpha"),
        ("{grid: {distill.alpha: [0.5, 0.7]}, split: test}", r"sweep.split"),
    ],
)
def test_a_mistake_in_the_grid_is_one_line(data_dir, sweep, message):
    with pytest.raises(SpecError, match=message) as error:
        load_spec(QUICKSTART, [f"sweep={sweep}"])
    assert "\n" not in str(error.value)


def test_a_grid_over_a_shared_teacher_stage_is_refused_at_its_line(data_dir, tmp_path):
    """Every student of a run reads the run's one teacher cache: a grid over a setting of it
    (the soft targets' temperature) would train every point on the run's cache, so it is
    refused at the grid key's line, naming the stage."""
    text = (
        open(QUICKSTART)
        .read()
        .replace(
            "\ntrain:\n",
            "\nsweep:\n  grid:\n    distill.alpha: [0.1, 0.5]\n    distill.cache.temperature: [1.0, 5.0]\n\ntrain:\n",
            1,
        )
    )
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    line = text.splitlines().index("    distill.cache.temperature: [1.0, 5.0]") + 1
    with pytest.raises(SpecError) as error:
        load_spec(str(path))
    assert str(error.value) == (
        f"{path}:{line}: sweep: student alpha0.1-temperature1.0: distill.cache.temperature: every student "
        "of the run shares its teacher_cache stage, which this setting keys; set it for the run instead "
        "(one run per value)"
    )
