"""``tfkd compare``: hypothesis files of any system, one per seed, against a reference: the text
and the JSON agree with :func:`tfkd.significance.compare`; mistakes are one line naming the
file; TensorFlow is never imported."""

import json
import os
import random
import subprocess
import sys

import pytest

from tfkd.cli import main
from tfkd.significance import compare


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    rng = random.Random(5)
    words = "the a dog cat runs sits on mat red blue small big".split()
    references = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(150)]

    def noisy(rate):
        return [" ".join(w if rng.random() > rate else "zz" for w in r.split()) for r in references]

    written = {"ref": folder / "ref.en", "a": [], "b": []}
    written["ref"].write_text("\n".join(references) + "\n", encoding="utf-8")
    for seed in range(3):
        for side, rate in (("a", 0.35), ("b", 0.2)):
            path = folder / f"{side}{seed}.hyp"
            path.write_text("\n".join(noisy(rate)), encoding="utf-8")  # no newline at the end: still 150 lines
            written[side].append(path)
    return written


def read(path):
    return path.read_text(encoding="utf-8").split("\n")


def test_json_is_the_python_functions_result(files, capsys):
    argv = ["compare", "--reference", str(files["ref"]), "--a", *map(str, files["a"]), "--b", *map(str, files["b"])]
    assert main([*argv, "--json", "--metric", "chrf", "--lowercase"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = compare(
        [read(p) for p in files["a"]],
        [read(p) for p in files["b"]],
        read(files["ref"])[:-1],
        metric="chrf",
        lowercase=True,
    )
    assert printed == expected
    assert printed["metric"] == "chrF" and "case:lc" in printed["signature"] and len(printed["seed_differences"]) == 3
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith("BLEU over 150 sentences, 3 seeds") and "seed-level p=" in text
    assert text.rstrip().endswith("established: both tests under 0.05")


def test_one_seed_says_the_seeds_cannot_judge(files, capsys):
    ref, a, b = str(files["ref"]), str(files["a"][0]), str(files["b"][0])
    assert main(["compare", "--reference", ref, "--a", a, "--b", b]) == 0
    text = capsys.readouterr().out
    assert "the seed-level test needs 3 seeds, not 1" in text
    assert text.rstrip().endswith("not established: the sentences say so, the seeds do not (fewer than 3)")


def test_mistakes_are_one_line_naming_the_file(files, tmp_path, capsys):
    short = tmp_path / "short.hyp"
    short.write_text("a\nb\n", encoding="utf-8")
    broken = tmp_path / "latin1.hyp"
    broken.write_bytes(b"caf\xe9\n")
    ref = str(files["ref"])
    cases = [
        (["--a", str(files["a"][0]), "--b", str(short)], f"{short}: 2 lines for the 150 of {ref}"),
        (["--a", str(broken), "--b", str(files["b"][0])], f"{broken}:1: not valid UTF-8"),
        (["--a", str(tmp_path / "none.hyp"), "--b", str(files["b"][0])], "none.hyp: file not found"),
        (["--a", *map(str, files["a"][:2]), "--b", str(files["b"][0])], "--a gives 2 files and --b 1"),
    ]
    for arguments, message in cases:
        assert main(["compare", "--reference", ref, *arguments]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_tensorflow_is_not_imported(files):
    code = (
        "import sys; from tfkd.cli import main; "
        f"main(['compare', '--reference', {str(files['ref'])!r}, '--a', {str(files['a'][0])!r}, "
        f"'--b', {str(files['b'][0])!r}, '--json']); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["seeds"] == 1
