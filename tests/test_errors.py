"""``tfkd.errors``: every tfkd error in one module that imports nothing, still importable from
the modules that first defined them."""

import os
import subprocess
import sys

from tfkd import errors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_each_error_keeps_its_base_and_its_old_import_path():
    from tfkd import data, distribute, runner, spec
    from tfkd.methods import base
    from tfkd.teachers import topk_cache as cache

    assert spec.SpecError is errors.SpecError and issubclass(errors.SpecError, ValueError)
    assert runner.StageError is errors.StageError and issubclass(errors.StageError, RuntimeError)
    assert data.DataError is errors.DataError and issubclass(errors.DataError, ValueError)
    assert cache.CacheMismatch is errors.CacheMismatch and issubclass(errors.CacheMismatch, errors.DataError)
    assert base.MethodError is errors.MethodError and issubclass(errors.MethodError, RuntimeError)
    assert distribute.DistributeError is errors.DistributeError and issubclass(errors.DistributeError, RuntimeError)


def test_first_line_is_the_message_s_first_line_or_the_type():
    assert errors.first_line(ValueError("  not found\n  at line 3")) == "not found"
    assert errors.first_line(KeyError()) == "KeyError"
    assert errors.first_line(RuntimeError("x" * 300)) == "x" * 200


def test_importing_the_errors_imports_no_tensorflow():
    code = "import sys, tfkd.errors, tfkd.registry, tfkd.spec; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
