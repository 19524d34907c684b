"""tools/results_data.py: a run kept in results/ gives back the table the run itself gives; a
page's results block is regenerated from the data and a changed number is caught; and every
results block of README.md and docs/ agrees with results/ (the check CI runs)."""

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO
from report_runs import synthetic_run

from tfkd.comparison import comparison_rows, render_table
from tfkd.report.contents import read_run

sys.path.insert(0, os.path.join(REPO, "tools"))

import results_data  # noqa: E402
from bench_deploy import deploy_tables  # noqa: E402


@pytest.fixture()
def kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TFKD_DATA_DIR", str(tmp_path / "data"))
    run = synthetic_run(tmp_path, name="three", seeds=(2, 3))
    spec = (run / "spec.yaml").read_text()
    (run / "spec.yaml").write_text(spec.replace("train: {steps: 40,", "train: {seeds: [1, 2, 3], steps: 40,"))
    out = results_data.keep(str(run), "three", "tfkd run specs/x.yaml --seeds 1,2,3", str(tmp_path / "results"))
    return run, out


def test_a_kept_run_gives_the_runs_own_table(kept):
    run, out = kept
    spec_text = open(os.path.join(out, "spec.yaml"), encoding="utf-8").read()
    assert "${TFKD_DATA_DIR}" in spec_text and str(os.path.dirname(run)) not in spec_text.split("run_dir")[0]
    assert os.path.exists(os.path.join(out, "stages", "evaluate-s3", "test.hyp.gz"))
    assert not os.path.exists(os.path.join(out, "stages", "evaluate-s3", "test.hyp"))
    assert (
        results_data.versions()["python"]
        == open(os.path.join(out, "versions.json")).read().split('"python": "')[1].split('"')[0]
    )
    contents = read_run(str(run))
    expected = render_table(*comparison_rows(contents.spec, contents.results, str(run)))
    table = results_data.experiment_table(out)
    assert table.startswith(expected + "\n")
    assert "seeds +" in table and "`tfkd run specs/x.yaml --seeds 1,2,3` (kept in `results/three/`)" in table


def test_the_keep_command_writes_the_command_and_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv("TFKD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(results_data, "RESULTS", str(tmp_path / "results"))
    run = synthetic_run(tmp_path, name="three", seeds=(2, 3))
    note = "stopped once and gone on from its checkpoint"
    assert (
        results_data.main(["keep", str(run), "three", "--command", "tfkd run x.yaml --seeds 1,2,3", "--note", note])
        == 0
    )
    out = tmp_path / "results" / "three"
    assert (out / "command.txt").read_text() == "tfkd run x.yaml --seeds 1,2,3\n"
    assert json.loads((out / "versions.json").read_text())["note"] == note


def test_pages_are_regenerated_and_a_changed_number_is_caught(kept, tmp_path):
    _, out = kept
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("# Results\n\n<!-- results: three -->\nold table\n<!-- /results -->\n\nthe end\n")
    pages = results_data.render_pages(os.path.dirname(out), ("docs/*.md",), str(tmp_path))
    text, regenerated = pages[str(page)]
    assert text != regenerated and regenerated.endswith("<!-- /results -->\n\nthe end\n")
    assert results_data.experiment_table(out) in regenerated
    page.write_text(regenerated)
    assert len({*results_data.render_pages(os.path.dirname(out), ("docs/*.md",), str(tmp_path))[str(page)]}) == 1
    page.write_text(regenerated.replace("20.00", "21.00"))  # a number typed by hand
    text, regenerated = results_data.render_pages(os.path.dirname(out), ("docs/*.md",), str(tmp_path))[str(page)]
    assert text != regenerated


def test_a_block_against_a_student_tests_the_others_against_it(kept, tmp_path):
    run, out = kept
    contents = read_run(str(run))
    expected = render_table(*comparison_rows(contents.spec, contents.results, str(run), against="train"))
    assert expected != render_table(*comparison_rows(contents.spec, contents.results, str(run)))
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text(
        "<!-- results: three against train -->\nold\n<!-- /results -->\n<!-- results: three -->\n<!-- /results -->\n"
    )
    _, regenerated = results_data.render_pages(os.path.dirname(out), ("docs/*.md",), str(tmp_path))[str(page)]
    against, plain = regenerated.split("<!-- results: three -->")
    assert against.startswith("<!-- results: three against train -->\n" + expected + "\n")
    assert expected not in plain and results_data.experiment_table(out) in plain


def test_every_page_agrees_with_results(data_dir):
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "results_data.py"), "pages", "--check"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TFKD_DATA_DIR=data_dir),
    )
    assert done.returncode == 0, done.stderr


def test_a_summary_block_tests_claims_across_experiments_as_one_holm_family(kept, tmp_path):
    _, out = kept
    results_dir = os.path.dirname(out)
    import shutil

    shutil.copytree(out, os.path.join(results_dir, "again"))
    _, _, split, tests = results_data.experiment_tests(out, "baseline")
    own = tests["train"]["BLEU"]
    assert split == "test" and own["difference"] > 0 and len(own["seed_differences"]) == 3
    table = results_data.summary_table(results_dir, "three/train, again/train, three/baseline vs train")
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()[2:]]
    assert [r[0] for r in rows] == ["`three`", "`again`", "`three`"]
    assert rows[0][2] == "baseline" and rows[2][2].startswith("soft_target")
    # the experiment's own test, its p-value Holm-adjusted over the table's three rows
    p, seed_p = own["p_value"], own["seed_p_value"]

    def shown(value):  # three decimals; under 0.0005 as "<0.001"
        return "<0.001" if value < 0.0005 else f"{value:.3f}"

    assert rows[0][6] == f"{own['difference']:+.2f} [{own['ci_low']:+.2f}, {own['ci_high']:+.2f}]"
    assert rows[0][7] == f"{shown(p)} ({shown(min(1, 3 * p))})" and rows[0][8].startswith(f"{shown(seed_p)} (")
    assert rows[2][6].startswith(f"{-own['difference']:+.2f}") and rows[2][5] == " ".join(
        f"{-d:+.2f}" for d in own["seed_differences"]
    )
    assert all(r[9] == ("yes" if own["established"] else "no") for r in rows)
    page = tmp_path / "docs" / "summary.md"
    page.parent.mkdir()
    page.write_text("<!-- results summary: three/train, again/train -->\nold\n<!-- /results -->\n")
    text, regenerated = results_data.render_pages(results_dir, ("docs/*.md",), str(tmp_path))[str(page)]
    assert "old" in text and results_data.summary_table(results_dir, "three/train, again/train") in regenerated
    with pytest.raises(SystemExit, match="'three/nobody'|no tested student 'nobody'"):
        results_data.summary_table(results_dir, "three/nobody")
    with pytest.raises(SystemExit, match="'three train' is not EXPERIMENT/STUDENT"):
        results_data.summary_table(results_dir, "three train")


FIRST_PASS = {"saved_model": 3.0, "ctranslate2 float32": 2.5}


def deploy_report():
    """A ``tools/bench.py --sections deploy`` report with two systems and round numbers."""
    algorithms = {
        algorithm: {
            batch: {
                "sentences_per_second": {
                    "saved_model": 10.0 * scale,
                    "ctranslate2 float32": 50.0 * scale,
                    "hugging face peer": 20.0 * scale,
                },
                "over_saved_model": {"saved_model": 1.0, "ctranslate2 float32": 5.0, "hugging face peer": 2.0},
                "first_pass_seconds": dict(FIRST_PASS, **{"hugging face peer": 1.5 * scale}),
            }
            for batch, scale in (("batch 64", 4), ("batch 1", 1))
        }
        for algorithm in ("beam", "greedy")
    }
    anchor = {
        "beam 4, batch 64": {
            "sentences_per_second": {f"{s} {q}": 100.0 for s in ("anchor", "tfkd") for q in ("float32", "int8")},
            "tfkd_over_anchor": {"float32": 1.0, "int8": 1.0},
        }
    }
    return {
        "machine": "2 CPUs",
        "deploy": {
            "sentences": 128,
            "batch_1_sentences": 32,
            "beam_size": 4,
            "algorithms": algorithms,
            "whole_test_set": {
                "run (evaluate stage)": {"bleu": 35.79},
                "ctranslate2 float32": {"bleu": 35.79, "lines_equal_to_the_run": 1000, "lines": 1000},
            },
            "size_mb": {"saved_model": 25.2, "ctranslate2 float32": 23.9},
            "loaded_memory_mb": {"saved_model": 970.0, "ctranslate2 float32": 859.0},
            "anchor": anchor,
        },
    }


def test_a_bench_block_is_the_kept_benchmark_s_table_and_a_changed_number_is_caught(tmp_path):
    path = results_data.keep_bench(deploy_report(), "deploy", "python tools/bench.py RUN --sections deploy", tmp_path)
    kept = json.loads(open(path).read())
    assert kept["command"] == "python tools/bench.py RUN --sections deploy" and kept["versions"]["tfkd_commit"]
    with pytest.raises(SystemExit, match="exists"):
        results_data.keep_bench(deploy_report(), "deploy", "again", tmp_path)
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    blocks = "<!-- bench: deploy speed -->\nold\n<!-- /bench -->\n\n<!-- bench: deploy test_set -->\n<!-- /bench -->\n"
    page.write_text("# Speed\n\n" + blocks)
    text, regenerated = results_data.render_pages(str(tmp_path), ("docs/*.md",), str(tmp_path))[str(page)]
    header = (
        "| sentences/s (over the SavedModel) | beam 4, batch 64 | beam 4, batch 1 | greedy, batch 64 | greedy, batch 1"
    )
    assert header in regenerated
    assert "| hugging face peer | 80.0 (2.00) | 20.0 (2.00) | 80.0 (2.00) | 20.0 (2.00) |" in regenerated
    assert "| ctranslate2 float32 | 35.79 | 1,000 of 1,000 | 23.9 MB | 859 MB |" in regenerated
    assert "`python tools/bench.py RUN --sections deploy` at tfkd " in regenerated and "old" not in regenerated
    first_pass = results_data.bench_table(str(tmp_path), "deploy", "first_pass")
    assert "| hugging face peer | 6.0 | 1.5 | 6.0 | 1.5 |" in first_pass
    older = deploy_report()  # kept before the warm-up pass was timed
    for rows in older["deploy"]["algorithms"].values():
        for row in rows.values():
            del row["first_pass_seconds"]
    assert deploy_tables({**kept, "report": older})["first_pass"].startswith("(this report predates")
    summary = results_data.bench_table(str(tmp_path), "deploy", "summary")
    assert "| ctranslate2 float32 | 200.0 (5.00) | 50.0 (5.00) | 35.79 | 23.9 MB |" in summary
    page.write_text(regenerated.replace("80.0 (2.00)", "81.0 (2.00)", 1))  # a number typed by hand
    text, regenerated = results_data.render_pages(str(tmp_path), ("docs/*.md",), str(tmp_path))[str(page)]
    assert text != regenerated
    page.write_text("<!-- bench: deploy speeds -->\n<!-- /bench -->\n")
    expected = "table 'speeds' of 'deploy': expected one of speed, first_pass, test_set, anchor, summary"
    with pytest.raises(SystemExit, match=expected):
        results_data.render_pages(str(tmp_path), ("docs/*.md",), str(tmp_path))


def test_a_kept_tool_table_is_what_the_tool_printed_with_its_command(tmp_path):
    results = tmp_path / "results"
    printer = f"{sys.executable} -c \"print('noise'); print('| a | b |'); print('|---|---|'); print('| 1 | 2.50 |')\""
    path = results_data.keep_table("exp", "stats", printer, str(results))
    kept = json.loads(open(path).read())
    assert kept["table"] == "| a | b |\n|---|---|\n| 1 | 2.50 |" and kept["command"] == printer
    with pytest.raises(SystemExit, match="exists"):
        results_data.keep_table("exp", "stats", printer, str(results))
    with pytest.raises(SystemExit, match="printed no Markdown table"):
        results_data.keep_table("exp", "none", f"{sys.executable} -c \"print('x')\"", str(results))
    with pytest.raises(SystemExit, match="failed"):
        results_data.keep_table("exp", "bad", f'{sys.executable} -c "raise SystemExit(3)"', str(results))
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("<!-- results table: exp/stats -->\nold\n<!-- /results -->\n")
    text, regenerated = results_data.render_pages(str(results), ("docs/*.md",), str(tmp_path))[str(page)]
    assert regenerated == (
        "<!-- results table: exp/stats -->\n| a | b |\n|---|---|\n| 1 | 2.50 |\n\n"
        f"`{printer}` (kept in `results/exp/tables/stats.json`)\n<!-- /results -->\n"
    )
    page.write_text(regenerated.replace("2.50", "2.60"))  # a number typed by hand
    text, regenerated = results_data.render_pages(str(results), ("docs/*.md",), str(tmp_path))[str(page)]
    assert text != regenerated and "2.50" in regenerated
