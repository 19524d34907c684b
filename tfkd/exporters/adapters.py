"""``export.format: adapters``: a student's trained weights and config alone."""

from tfkd import registry
from tfkd.errors import StageError
from tfkd.exporters.base import Exporter
from tfkd.models.abilities import AdapterStudent
from tfkd.spec import ADAPTERS_EXPORTER


@registry.register("exporter", ADAPTERS_EXPORTER)
class AdaptersExporter(Exporter):
    """``<model_name>/<version>.adapters.safetensors``: what trained of a student built on
    frozen pretrained models, and its Keras config (``student.save_adapters(path)``; AB-Net:
    :func:`tfkd.models.adapter_weights.save_adapters`, without the BERT weights). TF Serving ignores the
    file (its versions are numeric folders)."""

    name = ADAPTERS_EXPORTER
    writes = "the student's trained weights and Keras config alone (a student on frozen pretrained models)"
    suffix = ".adapters.safetensors"

    def write(self, context, student, path):
        if not isinstance(student, AdapterStudent):
            raise StageError(
                f"export.format {self.name}: a {type(student).__name__} student has no adapters to "
                "write alone (its weights are all trained); export it with format saved_model"
            )
        student.save_adapters(path)
