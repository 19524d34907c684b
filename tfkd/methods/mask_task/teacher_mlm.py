"""The mask-task method's ``teacher_mlm`` stage: the teacher's MLM head trained on the source
side of the training split, masked as the student's X' is (``distill.masking``,
``distill.mask_rate``); see :mod:`tfkd.teachers.mlm_head`."""

from tfkd import registry
from tfkd.teachers.mlm_head import TeacherMLMStage


class MaskTaskTeacherMLMStage(TeacherMLMStage):
    text_description = "source sentences"

    def masking(self, spec):
        return spec.distill.masking, spec.distill.mask_rate

    def text_key(self, spec):
        # the source side of the splits
        return registry.lookup("task", spec.task).data_key(spec, ["train", "valid"])

    def input_files(self, spec):
        return registry.lookup("task", spec.task).data_files(spec, ["train", "valid"])

    def sentences(self, context, split):
        corpus = context.task.corpus(context, split)
        return corpus.source, corpus.origin


__all__ = ["MaskTaskTeacherMLMStage"]
