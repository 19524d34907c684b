"""Attributes of a package that import their module on first access (``tfkd.models.X``), so
importing the package does not import TensorFlow."""

import importlib


def lazy_attributes(package, modules):
    """A module ``__getattr__`` for ``package``: ``modules`` maps attribute -> module path."""

    def __getattr__(name):
        if name in modules:
            return getattr(importlib.import_module(modules[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
