"""Tasks, one package or module each, registered by name (the spec's ``task``).

Importing this package imports each task's light top module (its :class:`Task` and spec
sections), which registers it; data pipelines, models and exporters import when a run uses them.
"""

import importlib
import pkgutil

from tfkd.tasks.base import Task

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Task"]
