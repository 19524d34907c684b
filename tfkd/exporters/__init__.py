"""Exporters, registered by name (``export.format``, ``tfkd export --format NAME``), as
OpenNMT-tf's are: ``saved_model`` (the default: the task's SavedModel that takes raw text) and
``adapters`` (a student's trained weights alone) and ``ctranslate2`` (a CTranslate2 model of a
Transformer translation student). :mod:`tfkd.exporters.base` holds the
:class:`Exporter` contract and the atomic TF Serving layout every exporter writes into;
:mod:`tfkd.exporters.text_saved_model` the SavedModel writer the tasks share.

Importing this package registers the built-in exporters without importing TensorFlow.
"""

from tfkd.exporters import adapters, ctranslate2, saved_model  # noqa: F401  (registers them)
from tfkd.exporters.base import Exporter

__all__ = ["Exporter"]
