"""Every spec in specs/, mutated by hypothesis (wrong types, missing and unknown keys, wrong
nesting, bad interpolation, unknown registry names, bad paths, out-of-range numbers, YAML
syntax errors, duplicate keys, anchors and aliases): each mistake is one line
``file:line: key.path: message``, in the file's order (a :class:`tfkd.spec.SpecError`, never
another exception), and each spec that is accepted loads again, unchanged, from its resolved
dump."""

import copy
import glob
import os
import re
import subprocess
import sys

import pytest
import yaml
from helpers import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfkd.spec import SpecError, dump_spec, load_spec

SPECS = sorted(glob.glob(os.path.join(REPO, "specs", "*.yaml")))
SPEC_DIR = os.path.join(REPO, "specs")

REGISTRY_KEYS = ("kind", "method", "algorithm", "task", "sampler", "strategy", "schedule", "precision")
PATH_KEYS = ("dir", "checkpoint", "run_dir", "text", "valid_text", "unlabeled", "extra_text")
BAD_VALUES = ["six", [1, 2], {"a": 1}, True, None, -1, 0, 10**12, float("nan"), float("inf"), -0.5, ""]
# one line: the file, a line number, then what was wrong (a key path, or what the YAML parser said)
ONE_LINE = re.compile(r"^(?P<file>[^\n:]+):(?P<line>\d+): (?P<rest>[^\n]+)$")


def paths(tree, prefix=()):
    """Every key path of a parsed spec (mappings and list items)."""
    found = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found.append(prefix + (key,))
            found += paths(value, prefix + (key,))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found.append(prefix + (i,))
            found += paths(value, prefix + (i,))
    return found


def parent_of(tree, path):
    for key in path[:-1]:
        tree = tree[key]
    return tree


def structural(tree, path, operation, value, draw_name):
    """``tree`` (a parsed spec) with one mutation at ``path``."""
    tree = copy.deepcopy(tree)
    parent, key = parent_of(tree, path), path[-1]
    if operation == "type":
        parent[key] = value
    elif operation == "delete":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif operation == "unknown" and isinstance(parent, dict):
        parent[draw_name] = 1
    elif operation == "misspell" and isinstance(parent, dict) and isinstance(key, str):
        parent[key[:-1] + key[-1].upper() if len(key) > 1 else key + "x"] = parent.pop(key)
    elif operation == "nest" and isinstance(parent, dict):
        # move the key one level down, under a sibling mapping (or into a new one)
        moved = parent.pop(key)
        siblings = [k for k, v in parent.items() if isinstance(v, dict)]
        target = siblings[0] if siblings else "section"
        parent.setdefault(target, {})[key] = moved
    elif operation == "registry":
        parent[key] = "no_such_" + str(key)
    elif operation == "path":
        parent[key] = "/nonexistent/tfkd/" + str(key)
    elif operation == "interpolation":
        parent[key] = value
    else:
        parent[key] = value
    return tree


TEXT_MUTATIONS = [
    lambda text: text + "\nbroken: [unclosed\n",  # YAML syntax
    lambda text: text + "\n\tname: tab\n",  # a tab in indentation
    lambda text: text.replace("\n", "\nname: twice\n", 1) if "\nname:" in text else text + "name: a\nname: b\n",
    lambda text: text + "\nvariants: {x: {train: *nowhere}}\n",  # an alias without an anchor
    lambda text: text + "\nextra: &anchor {steps: 3}\nmore: *anchor\n",  # anchors of unknown keys
    lambda text: text.replace("train:", "train: &t", 1) + "\nvariants: {copy: *t}\n" if "\ntrain:" in text else text,
    lambda text: text + "\nname: ${UNSET_TFKD_VARIABLE}\n",
    lambda text: text + "\nname: ${BROKEN\n",
    lambda text: text + "\n: no key\n",
    lambda text: "",
    lambda text: "- a list\n- not a mapping\n",
    lambda text: text + "\n---\nname: second document\n",
]


def check(path):
    """Load ``path``: a one-line SpecError naming the file, or a spec that survives a dump."""
    try:
        spec = load_spec(path, import_dir=SPEC_DIR, check_models=True)
    except SpecError as e:
        with open(path, encoding="utf-8") as f:
            lines = f.read().count("\n") + 1
        found = []
        for message in str(e).split("\n"):  # one line a mistake, in the file's order
            match = ONE_LINE.match(message)
            assert match, f"not one line file:line: ...: {message!r}"
            assert match["file"] == str(path), message
            assert 1 <= int(match["line"]) <= lines + 1, message
            found.append(int(match["line"]))
        assert found == sorted(found), str(e)
        return "refused"
    dumped = str(path) + ".resolved.yaml"
    dump_spec(spec, dumped)
    again = load_spec(dumped, import_dir=SPEC_DIR, check_models=True)
    assert again.to_dict() == spec.to_dict()
    return "accepted"


SETTINGS = settings(
    max_examples=int(os.environ.get("TFKD_MUTATIONS", 150)),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(data=st.data())
def test_structural_mutations_are_one_line_or_valid(data, tmp_path_factory):
    source = data.draw(st.sampled_from(SPECS), label="spec")
    with open(source, encoding="utf-8") as f:
        tree = yaml.safe_load(f)
    path = data.draw(st.sampled_from(paths(tree)), label="path")
    key = path[-1]
    operations = ["type", "delete", "unknown", "misspell", "nest"]
    if key in REGISTRY_KEYS:
        operations.append("registry")
    if key in PATH_KEYS:
        operations.append("path")
    operations.append("interpolation")
    operation = data.draw(st.sampled_from(operations), label="operation")
    value = (
        data.draw(st.sampled_from(["${UNSET_TFKD_VARIABLE}", "${BROKEN", "$${ESCAPED}", "${TFKD_DATA_DIR:-}"]))
        if operation == "interpolation"
        else data.draw(st.sampled_from(BAD_VALUES), label="value")
    )
    name = data.draw(st.sampled_from(["zz_unknown", "trian", "student2", "_private"]), label="unknown key")
    mutated = structural(tree, path, operation, value, name)
    target = tmp_path_factory.mktemp("mutated") / os.path.basename(source)
    target.write_text(yaml.safe_dump(mutated, sort_keys=False, allow_unicode=True), encoding="utf-8")
    check(target)


@SETTINGS
@given(data=st.data())
def test_text_mutations_are_one_line_or_valid(data, tmp_path_factory):
    source = data.draw(st.sampled_from(SPECS), label="spec")
    mutate = data.draw(st.sampled_from(TEXT_MUTATIONS), label="mutation")
    with open(source, encoding="utf-8") as f:
        text = f.read()
    target = tmp_path_factory.mktemp("mutated") / os.path.basename(source)
    target.write_text(mutate(text), encoding="utf-8")
    check(target)


@pytest.mark.parametrize("source", SPECS, ids=os.path.basename)
def test_every_spec_round_trips_through_its_resolved_dump(source, tmp_path):
    target = tmp_path / os.path.basename(source)
    target.write_text(open(source, encoding="utf-8").read(), encoding="utf-8")
    assert check(target) == "accepted"


def test_the_cli_answers_a_mutated_spec_with_exit_code_2_and_no_traceback(tmp_path):
    source = os.path.join(SPEC_DIR, "quickstart.yaml")
    text = open(source, encoding="utf-8").read()
    cases = {
        "type": text.replace("steps: ", "steps: six #", 1),
        "duplicate": text + "\nname: again\n",
        "syntax": text + "\nbroken: [unclosed\n",
        "alias": text + "\nvariants: {x: {train: *nowhere}}\n",
        "registry": text.replace("kind: transformer", "kind: transformerz", 1),
    }
    for name, mutated in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(mutated, encoding="utf-8")
        out = subprocess.run(
            [sys.executable, "-m", "tfkd.cli", "validate", str(path)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert out.returncode == 2, (name, out.stderr)
        assert len(out.stderr.splitlines()) == 1 and ONE_LINE.match(out.stderr.strip()), (name, out.stderr)
        assert "Traceback" not in out.stderr
