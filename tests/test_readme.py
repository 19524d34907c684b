"""The README as a guide: short, its set-up commands real (every spec it names exists and
validates with the --set flags it gives; every install extra exists), and every link of the
README and of docs/ resolving to a file and, with an anchor, to a heading there."""

import configparser
import os
import re
import shlex

import pytest
from helpers import REPO

README = os.path.join(REPO, "README.md")
DOCS = os.path.join(REPO, "docs")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def commands(block):
    """The block's commands, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def github_anchor(heading):
    """The id GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_readme_stays_a_short_guide():
    text = read(README)
    assert len(text.splitlines()) < 400
    assert text.index("## Set up and run") < text.index("## A short tour")
    for guide in ("running", "spec-reference", "methods", "extending", "serving", "results", "benchmarks"):
        assert f"(docs/{guide}.md" in text, guide


def test_every_tfkd_run_in_the_readme_names_a_spec_that_validates(monkeypatch):
    from tfkd.spec import load_spec

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("TFKD_DATA_DIR", os.environ["TFKD_DATA_DIR"])
    runs = [c for block in bash_blocks(read(README)) for c in commands(block) if c.startswith("tfkd run ")]
    assert len(runs) >= 2  # the main job and the smoke test
    for command in runs:
        words = shlex.split(command)
        spec, flags = words[2], words[3:]
        overrides = [flags[i + 1] for i, flag in enumerate(flags) if flag == "--set"]
        assert os.path.exists(spec), command
        load_spec(spec, overrides, check_models=True)  # raises a SpecError naming the mistake


def test_every_spec_the_readme_names_exists():
    named = set(re.findall(r"(?<![\w/])(?:specs/)?(\w+\.yaml)", read(README)))
    assert named
    for name in named - {"lightpaff_*.yaml"}:
        assert os.path.exists(os.path.join(REPO, "specs", name)), name


def test_every_install_extra_the_readme_names_exists():
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    extras = set(config["options.extras_require"])
    named = set(re.findall(r'\.\[([\w,]+)\]"', read(README)))
    named |= set(re.findall(r"^\| `\[(\w+)\]` \|", read(README), re.M))
    assert {"test", "teacher", "bench", "tools"} <= set(",".join(named).split(","))
    for group in named:
        assert set(group.split(",")) <= extras, group


@pytest.mark.parametrize(
    "page", ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir(DOCS) if f.endswith(".md"))
)
def test_every_link_resolves(page):
    path = os.path.join(REPO, page)
    for target in re.findall(r"\]\(([^)\s]+)\)", read(path)):
        if re.match(r"https?://", target):
            continue
        file, _, anchor = target.partition("#")
        linked = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        assert os.path.exists(linked), f"{page}: {target}: no file {linked}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", read(linked), re.M)
            assert anchor in {github_anchor(h) for h in headings}, f"{page}: {target}: no such heading"
