"""The report's HTML: escaping, tables, notes, figures and the page around them. One page,
its style inline, no scripts; figures are image files beside it, referenced by relative path.
Importing this module imports neither TensorFlow nor matplotlib."""

import html
import re

escape = html.escape


def slug(text):
    """``text`` as a file or anchor name: lowercase letters, digits, ``-`` and ``_``."""
    return re.sub(r"[^a-z0-9_-]+", "-", str(text).lower()).strip("-") or "x"


def paragraph(text):
    """A ``<p>`` of plain ``text`` (escaped)."""
    return f"<p>{escape(str(text))}</p>"


def note(text):
    """A ``<p class="missing">``: what the page cannot show, and why (escaped)."""
    return f'<p class="missing">{escape(str(text))}</p>'


def code(text):
    """Inline ``<code>`` (escaped)."""
    return f"<code>{escape(str(text))}</code>"


def pre(text):
    return f"<pre>{escape(str(text))}</pre>"


def bullet_list(items, raw=False):
    """A ``<ul>`` of ``items`` (escaped unless ``raw``: already HTML)."""
    if not items:
        return ""
    return "<ul>" + "".join(f"<li>{item if raw else escape(str(item))}</li>" for item in items) + "</ul>"


def table(header, rows, numeric=None, raw_columns=()):
    """A ``<table>`` of ``header`` and ``rows`` (lists of cells, escaped but for the columns in
    ``raw_columns``). ``numeric``: column indexes right-aligned (default: columns whose cells all
    read as numbers)."""
    rows = [[("" if c is None else c) for c in row] for row in rows]
    if numeric is None:
        numeric = {i for i in range(len(header)) if rows and all(_looks_numeric(r[i]) for r in rows if i < len(r))}

    def cell(tag, value, i):
        text = str(value) if i in raw_columns else escape(str(value))
        return f'<{tag} class="num">{text}</{tag}>' if i in numeric else f"<{tag}>{text}</{tag}>"

    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell("td", c, i) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _looks_numeric(value):
    text = str(value).replace(",", "").replace("±", "").replace("%", "").split()
    if not text:
        return False
    try:
        float(text[0])
    except ValueError:
        return text[0] in ("-", "?")
    return True


def number(value, digits=2):
    """A cell for a number: ``1,234`` for integers, ``digits`` decimals for floats, ``-`` for
    ``None``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value and abs(value) < 10 ** (-digits):
            return f"{value:.{digits}e}"
        return f"{value:,.{digits}f}"
    return str(value)


def figure(src, caption=None):
    """An ``<img>`` of the file ``src`` (relative to the page) with its caption."""
    caption = caption or src
    return (
        f'<figure><img src="{escape(src)}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'
    )


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.missing { background: #fff4e5; border-left: 4px solid #f0a030; padding: 0.4em 0.8em; }
.status-ok { background: #eaf7ea; border-left: 4px solid #3a9a3a; padding: 0.4em 0.8em; }
.meta { color: #555; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
nav ul { columns: 2; font-size: 0.9em; }
"""


def page(title, intro, sections):
    """The whole document: ``title``, the ``intro`` fragment, a list of contents, then each
    ``(title, fragment)`` of ``sections`` under its own heading and anchor."""
    anchors = []
    for heading, _ in sections:
        anchor = slug(heading)
        while anchor in anchors:
            anchor += "-"
        anchors.append(anchor)
    contents = "".join(f'<li><a href="#{a}">{escape(heading)}</a></li>' for a, (heading, _) in zip(anchors, sections))
    body = "\n".join(
        f'<section id="{a}">\n<h2>{escape(heading)}</h2>\n{fragment}\n</section>'
        for a, (heading, fragment) in zip(anchors, sections)
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{intro}\n<nav><ul>{contents}</ul></nav>\n{body}\n</body>\n</html>\n"
    )


__all__ = [
    "bullet_list",
    "code",
    "escape",
    "figure",
    "note",
    "number",
    "page",
    "paragraph",
    "pre",
    "slug",
    "table",
]
