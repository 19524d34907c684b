"""tfkd: distil pretrained language models into fast seq2seq and classification students."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfkd import layers, models, registry  # noqa: E402
from tfkd.registry import register  # noqa: E402
from tfkd.spec import SpecError, load_spec  # noqa: E402

__version__ = "0.1.0"
__all__ = ["SpecError", "layers", "load_spec", "models", "register", "registry"]
