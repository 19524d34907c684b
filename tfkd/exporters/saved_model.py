"""``export.format: saved_model`` (the default): the task's SavedModel that takes raw text."""

from tfkd import registry
from tfkd.exporters.base import Exporter


@registry.register("exporter", "saved_model")
class SavedModelExporter(Exporter):
    """``<model_name>/<version>/``: a SavedModel for TF Serving whose ``serving_default`` takes
    raw text, as the run's task defines it (:meth:`tfkd.tasks.Task.export`, written with
    :func:`tfkd.exporters.text_saved_model.write_text_saved_model`)."""

    name = "saved_model"
    writes = "a TF Serving SavedModel that takes raw text (the task's signatures)"

    def write(self, context, student, path):
        context.task.export(context, student, path)

    @classmethod
    def find(cls, path):
        from tfkd.serving import find_saved_model

        return find_saved_model(path)

    @classmethod
    def predictor(cls, path, batch_size=None):
        from tfkd.serving import read_export_info, saved_model_predictor

        return saved_model_predictor(path, batch_size), read_export_info(path)
