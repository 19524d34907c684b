"""Distillation methods, one package or module each, registered by name (``distill.method``).

Importing this package imports each method's light top module (its :class:`Method` and spec
section), which registers it; the heavy parts (stages, trainers) import when a run uses them.
A user's method registers the same way from a module named under ``imports:``.
"""

import importlib
import pkgutil

from tfkd.methods.base import Method, MethodSpec

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Method", "MethodSpec"]
