"""``tfkd.report.html``: cells and text escaped, numbers right-aligned, a page whose tags balance
and whose anchors are unique."""

import re

from report_runs import _Checker

from tfkd.report import html


def test_table_escapes_cells_except_raw_columns_and_aligns_numbers():
    out = html.table(
        ["name", "score", "note"], [["<b>x</b>", "1,234", "<i>ok</i>"], ["y & z", "-", "a"]], raw_columns={2}
    )
    assert "&lt;b&gt;x&lt;/b&gt;" in out and "y &amp; z" in out and "<i>ok</i>" in out
    assert '<td class="num">1,234</td>' in out and '<td class="num">-</td>' in out
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td>" in out  # text columns stay left


def test_numbers():
    assert html.number(1234567) == "1,234,567"
    assert html.number(3.14159) == "3.14" and html.number(0.0001) == "1.00e-04"
    assert html.number(None) == "-" and html.number("abc") == "abc"


def test_slug_is_a_safe_file_and_anchor_name():
    assert html.slug("curves-train-s2") == "curves-train-s2"
    assert html.slug("BLEU by source length / test") == "bleu-by-source-length-test"
    assert html.slug("../../etc") == "etc"


def test_a_page_balances_and_its_anchors_are_unique():
    page = html.page(
        "Run <x>",
        html.note("missing & more"),
        [("Same", html.paragraph("a")), ("Same", html.figure("f.png", 'a "quoted" caption')), ("Other", "")],
    )
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.doctype and not checker.problems and not checker.stack
    anchors = re.findall(r'<section id="([^"]+)">', page)
    assert anchors == ["same", "same-", "other"]
    assert [re.findall(r'href="#([^"]+)"', page)] == [anchors]
    assert "<title>Run &lt;x&gt;</title>" in page and 'alt="a &quot;quoted&quot; caption"' in page
    assert "<script" not in page  # nothing to run: nothing to fail in a browser
