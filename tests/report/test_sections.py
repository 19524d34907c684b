"""``tfkd.report.sections``: the comparison table is whatever ``comparison_rows`` returns (its
header, its rows, a run directory passed when it takes one), and the sections say what they
cannot show."""

from report_runs import synthetic_run

from tfkd import comparison
from tfkd.report import sections
from tfkd.report.contents import read_run


def test_the_comparison_is_what_comparison_rows_returns(tmp_path, monkeypatch):
    contents = read_run(str(synthetic_run(tmp_path)))
    seen = {}

    def rows(spec, results, run_dir=None, against=None):  # a later comparison_rows: more columns, the outputs read
        seen["run_dir"], seen["against"] = run_dir, against
        return ["student", "test BLEU (mean ± std)", "vs baseline"], [
            ["baseline", "20.00 ± 0.10", "-"],
            ["x<y", "1", "+2 *"],
        ]

    monkeypatch.setattr(comparison, "comparison_rows", rows)
    html = sections.comparison_section(contents).html
    assert seen == {"run_dir": contents.run_dir, "against": None}
    sections.comparison_section(contents, against="train")
    assert seen["against"] == "train"  # the reference student is passed on as it is
    assert "<th>test BLEU (mean ± std)</th>" in html and "<td>x&lt;y</td>" in html and "+2 *" in html


def test_without_two_evaluated_students_the_comparison_says_why(tmp_path):
    contents = read_run(str(synthetic_run(tmp_path, finished=False)))
    section = sections.comparison_section(contents)
    assert "No comparison table: it needs two evaluated students; 1 is evaluated" in section.html
    assert "handmade: baseline test BLEU 20.00" in section.html  # the scores there are


def test_size_and_speed_without_an_evaluated_student(tmp_path):
    contents = read_run(str(synthetic_run(tmp_path)))
    for student in contents.students:
        student.evaluate_results = None
    section = sections.size_speed_section(contents, str(tmp_path))
    assert "No student is both trained and evaluated yet: no plot." in section.html and not section.figures
    assert "not evaluated" in section.html


def test_a_partial_teacher_stage_says_its_results_are_missing(tmp_path):
    run = synthetic_run(tmp_path)
    (run / "teacher_cache").rename(run / "teacher_cache.partial")
    (run / "teacher_cache.partial" / "stage.json").unlink()
    section = sections.teacher_section(read_run(str(run)), str(tmp_path))
    assert "stage teacher_cache: partial; its results are missing" in section.html
    assert "top_k_mass" in section.html  # the manifest is there already


def test_the_method_s_teacher_row_heads_the_teacher_section(tmp_path, monkeypatch):
    contents = read_run(str(synthetic_run(tmp_path)))
    row = {
        "label": "teacher (MiniLM, fine-tuned)",
        "scores": {"valid": {"metric": "BLEU", "score": 31.5}, "test": {"metric": "BLEU", "score": 30.25}},
        "parameters": 22_700_000,
        "steps": 6,
        "seconds": 30.0,
    }
    monkeypatch.setattr(type(contents.context.method), "teacher_row", lambda self, context, results: row)
    html = sections.teacher_section(contents, str(tmp_path)).html
    assert "<th>valid BLEU</th><th>test BLEU</th>" in html
    assert '<td>teacher (MiniLM, fine-tuned)</td><td class="num">31.50</td><td class="num">30.25</td>' in html
    assert "22,700,000" in html
