"""Where code lives: each built-in method in its own place, importing no other method's package
(shared KD machinery is in :mod:`tfkd.distillation` and the teachers in :mod:`tfkd.teachers`,
which import no method); a method's
modules never import their own package's ``__init__``; the tests mirror the package tree."""

import ast
import collections
import pathlib
import subprocess
import sys

import pytest
from helpers import REPO, TESTS

PACKAGE = pathlib.Path(REPO) / "tfkd"
METHODS = PACKAGE / "methods"


def module_name(path):
    relative = path.relative_to(REPO).with_suffix("")
    return ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)


def imports_of(path):
    """``(module, names)`` of every import in ``path``, also those inside functions, relative
    imports made absolute; ``importlib.import_module("...")`` with a literal counts too."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            found.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = getattr(node.func, "attr", getattr(node.func, "id", None))
            if called == "import_module" and isinstance(node.args[0].value, str):
                found.append((node.args[0].value, []))
    return found


def imported_modules(path):
    """Every module ``path`` imports: ``from a import b`` imports ``a`` and, when ``b`` is one,
    the module ``a.b``."""
    modules = set()
    for module, names in imports_of(path):
        modules.add(module)
        modules.update(f"{module}.{n}" for n in names)
    return modules


def builtin_methods():
    """``{method: [its files]}``: the packages and modules under ``tfkd/methods`` but ``base``."""
    methods = {}
    for entry in sorted(METHODS.iterdir()):
        if entry.is_dir() and (entry / "__init__.py").exists():
            methods[entry.name] = sorted(entry.rglob("*.py"))
        elif entry.suffix == ".py" and entry.stem not in ("__init__", "base"):
            methods[entry.stem] = [entry]
    return methods


def test_no_method_imports_another_methods_package():
    methods = builtin_methods()
    assert {"soft_target", "mask_task", "two_stage", "adapters", "supervised"} <= set(methods)
    crossing = []
    for method, files in methods.items():
        for path in files:
            for module, names in imports_of(path):
                for candidate in (module, *(f"{module}.{n}" for n in names)):
                    parts = candidate.split(".")
                    if (
                        parts[:2] == ["tfkd", "methods"]
                        and len(parts) > 2
                        and parts[2] in methods
                        and parts[2] != method
                    ):
                        crossing.append(f"{path.relative_to(REPO)} imports {candidate}")
                        break
    assert not crossing, (
        "a method imports another method's package (move what they share to "
        "tfkd/distillation or tfkd/teachers):\n" + "\n".join(sorted(set(crossing)))
    )


@pytest.mark.parametrize(
    "package, modules",
    [
        ("distillation", {"__init__.py", "divergences.py", "temperature.py", "settings.py"}),
        ("teachers", {"__init__.py", "checkpoints.py", "cmlm.py", "mlm_head.py", "topk_cache.py", "settings.py"}),
    ],
)
def test_the_shared_packages_import_no_method_and_no_task(package, modules):
    files = sorted((PACKAGE / package).rglob("*.py"))
    assert {p.name for p in files} >= modules
    named = [
        f"{p.relative_to(REPO)} imports {m}"
        for p in files
        for m in sorted(imported_modules(p))
        if m.split(".")[:2] in (["tfkd", "methods"], ["tfkd", "tasks"])
    ]
    assert not named, "\n".join(named)


def test_a_methods_modules_never_import_its_package_init():
    """Python imports a package before its submodules, so a submodule that imports names from
    its package's ``__init__`` (which imports the submodules for its stages) closes a circle;
    what both need lives in a light submodule of its own."""
    circles = []
    for method, files in builtin_methods().items():
        package = f"tfkd.methods.{method}"
        submodules = {p.stem for p in files if p.parent == METHODS / method}
        for path in files:
            if path.name == "__init__.py":
                continue
            for module, names in imports_of(path):
                own = [n for n in names if n not in submodules] if module == package else []
                if own or (module == package and not names):
                    circles.append(f"{path.relative_to(REPO)} imports {own or module} from {package}")
    assert not circles, "\n".join(circles)


def test_the_shared_package_and_the_light_method_helpers_import_no_tensorflow():
    code = (
        "import sys; import tfkd.distillation, tfkd.distillation.settings, tfkd.teachers, tfkd.teachers.settings, "
        "tfkd.methods.two_stage.settings; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_hub') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- the tests' own tree

TOOLS = pathlib.Path(REPO) / "tools"
# top-level test files whose subject is no single module: {file: why it is here}
TOP_LEVEL_TESTS = {
    "test_layout.py": "where code lives, and these tests",
    "test_readme.py": "the README and docs/: their commands, specs, extras and links",
    "test_paper_specs.py": "the specs that name a paper's settings, against the papers",
    "test_forked_cli.py": "the suite's fork server of tfkd commands (tests/forked_cli.py)",
}


def mirrored_source(folder):
    """The source folder ``tests/<folder>`` mirrors: ``tfkd/<folder>`` (a package) or, for
    ``tests/tools``, ``tools/``; ``None`` when it mirrors nothing."""
    relative = folder.relative_to(TESTS)
    if relative.parts[:1] == ("tools",):
        source = TOOLS.joinpath(*relative.parts[1:])
        return source if source.is_dir() else None
    source = PACKAGE.joinpath(*relative.parts)
    return source if (source / "__init__.py").exists() else None


def misplaced_test(path):
    """Why the test file ``path`` is not where its name says its subject is (``None`` if it is).

    In the folder mirroring ``tfkd/<a>/`` (or ``tools/``), ``test_<x>.py`` tests the package
    itself (``<x>`` is the package's name or starts with it and ``_``) or one of its modules
    (``<x>`` is the module's name or starts with it and ``_``); a test of a subpackage goes in
    the subpackage's folder. At the top, only tests of ``tfkd/<m>.py`` and ``TOP_LEVEL_TESTS``."""
    folder = pathlib.Path(path).parent
    source = mirrored_source(folder)
    if source is None:
        return f"{folder.relative_to(REPO)}/ mirrors no package of tfkd/ (nor tools/)"
    stem = path.stem[len("test_") :]

    def named(name):
        return stem == name or stem.startswith(name + "_")

    subpackages = [p.name for p in source.iterdir() if (p / "__init__.py").exists()]
    modules = [p.stem for p in source.glob("*.py") if p.stem not in ("__init__", "__main__")]
    top = folder == pathlib.Path(TESTS)
    within = [s for s in subpackages if named(s)]
    if within:
        place = pathlib.Path(TESTS, *source.relative_to(PACKAGE).parts, within[0]).relative_to(REPO)
        return f"names the subpackage {(source / within[0]).relative_to(REPO)}/: its place is {place}/"
    if top and path.name in TOP_LEVEL_TESTS:
        return None
    if any(named(m) for m in modules) or (not top and named(source.name)):
        return None
    return (
        f"names no module of {source.relative_to(REPO)}/"
        + ("" if top else " nor the package itself")
        + " (a test of tfkd/<a>/<b>.py lives in tests/<a>/)"
    )


def test_the_tests_mirror_the_package_tree():
    """A test of ``tfkd/<a>/<b>.py`` or of the package ``tfkd/<a>/<b>/`` lives under ``tests/<a>/``
    mirroring the package's folders (``tests/tools/`` for ``tools/``); the modules the tests
    share stay at the top, which conftest puts on ``sys.path``."""
    tests = pathlib.Path(TESTS)
    files = sorted(tests.rglob("test_*.py"))
    assert len(files) > 40
    wrong = [f"{p.relative_to(REPO)}: {why}" for p in files if (why := misplaced_test(p))]
    folders = [
        d
        for d in tests.rglob("*")
        if d.is_dir() and not any(part == "__pycache__" or part.startswith(".") for part in d.relative_to(tests).parts)
    ]
    wrong += [
        f"{d.relative_to(REPO)}/ mirrors no package of tfkd/ (nor tools/)"
        for d in folders
        if mirrored_source(d) is None
    ]
    # a shared module (or a second conftest.py) in a subfolder is importable from that folder only
    wrong += [
        f"{p.relative_to(REPO)}: only test files below tests/ (shared modules stay in tests/)"
        for p in tests.rglob("*.py")
        if p.parent != tests and not p.name.startswith("test_")
    ]
    assert not wrong, "tests out of place:\n" + "\n".join(sorted(set(wrong)))


def test_test_file_names_are_unique():
    """The test folders have no ``__init__.py``: pytest imports each test file by its name."""
    names = collections.Counter(p.name for p in pathlib.Path(TESTS).rglob("*.py") if "__pycache__" not in p.parts)
    assert not [n for n, count in names.items() if count > 1], names.most_common(3)
