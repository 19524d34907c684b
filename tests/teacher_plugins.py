"""A user's method, kept outside tfkd/ on purpose: token-level KD from one student teacher, a
train stage of the run trained by any method (here a wider Transformer trained by
``supervised``) or an exported tfkd translation model, with any divergence of the family.

It uses tfkd's public pieces only: the shared student-teacher cache
(:mod:`tfkd.teachers.student_plan` plans it, :mod:`tfkd.teachers.student_caches` writes it, with
the mass outside the K when ``distill.tail`` is set), the top-K cache reader and the
soft-target trainer. tests/teachers/test_student_caches.py runs it; that it needs no change to
tfkd/ is the point.
"""

from pydantic import Field, PositiveInt

from tfkd.distillation.settings import DivergenceSettings
from tfkd.methods.base import Method, MethodSpec
from tfkd.registry import register
from tfkd.tasks.base import AlignedPairs
from tfkd.teachers.student_plan import plan_student_cache, student_cache_stage, student_source_problem


class TeacherKDSpec(DivergenceSettings, MethodSpec):
    method: str = "teacher_kd"
    # a train stage of the run that runs before the student, or an exported model version folder
    teacher: str
    alpha: float = Field(0.5, ge=0, le=1)
    top_k: PositiveInt = 8
    temperature: float = Field(1.0, gt=0)
    shuffle_buffer: PositiveInt = 1000


def teacher_cache(section):
    return student_cache_stage(section.teacher, "teacher")


class TeacherKDMethod(Method):
    """``soft * D(teacher || student) + xe * L_xe`` over the teacher's cached top K."""

    name = "teacher_kd"
    spec_schema = TeacherKDSpec
    loss_terms = ("soft", "xe")
    requires = (AlignedPairs,)

    def default_loss_weights(self, section):
        return {"soft": section.alpha, "xe": 1.0 - section.alpha}

    def extend_plan(self, context, plan):
        for student, _, own in context.method_students(plan):
            section = own.distill
            if student_source_problem(plan, section.teacher, student):
                continue  # check_plan says why
            cache = teacher_cache(section)
            plan_student_cache(
                plan, cache, section.teacher, top_k=section.top_k, temperature=section.temperature, tail=section.tail
            )
            plan.add_dependency(student, cache)

    def check_plan(self, context, plan):
        problems = []
        for student, variant, own in context.method_students(plan):
            problem = student_source_problem(plan, own.distill.teacher, student)
            if problem:
                problems.append((variant, ("distill", "teacher"), problem))
        return problems

    def train_config(self, context):
        section = context.spec.distill
        return {"loss_weights": self.loss_weights(section), **section.divergence_key()}

    def train_columns(self, context, stage_name):
        from tfkd.teachers.topk_cache import stream_cache

        section = context.spec.distill
        return stream_cache(
            context.runner.stage_dir(teacher_cache(section)),
            expected_ids=context.task.example_ids(context, "train", stage_name),
            seed=context.spec.train.seed,
            shuffle_buffer=section.shuffle_buffer,
        )

    def make_trainer(self, context, student):
        from tfkd.distillation.soft_target_distiller import SoftTargetDistiller

        return SoftTargetDistiller.for_run(context, student, self.loss_weights(context.spec.distill))


register("method", "teacher_kd")(TeacherKDMethod())
