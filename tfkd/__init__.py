"""tfkd: distil pretrained language models into fast seq2seq and classification students.

Importing ``tfkd`` is cheap: TensorFlow loads when a model, layer or trainer is first used.
"""

from tfkd import registry
from tfkd.errors import SpecError
from tfkd.registry import register
from tfkd.spec import load_spec

__version__ = "0.1.0"
__all__ = [
    "Predictor",
    "SpecError",
    "layers",
    "load",
    "load_spec",
    "methods",
    "models",
    "register",
    "registry",
    "tasks",
]


def __getattr__(name):
    if name in ("load", "Predictor"):  # tfkd.load(path): an export or a run directory, on text
        from tfkd import predictor

        return getattr(predictor, name)
    if name in ("layers", "models", "methods", "tasks", "training", "testing", "decoding"):
        import importlib

        return importlib.import_module(f"tfkd.{name}")
    raise AttributeError(f"module 'tfkd' has no attribute {name!r}")
