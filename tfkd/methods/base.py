"""What a distillation method is. Importing this module does not import TensorFlow."""

from typing import ClassVar, Literal

import pydantic

from tfkd.errors import MethodError
from tfkd.spec import TEACHER_TARGETS, Strict


class MethodSpec(Strict):
    """The ``distill:`` section every method's schema extends."""

    method: str
    # {term: weight} of the method's loss terms; unset gives the paper's formula
    loss_weights: dict[str, float] | None = None
    # what the train stage's targets are (sequence-level KD, Kim & Rush 2016): the training
    # split's references, or the beam-search translations of its sources by ``targets_from``
    # (a train stage of the run, such as baseline or a variant, or the path of an exported model
    # version folder), written by the task's teacher_translations stage. A variant trains on the
    # references unless it sets targets itself (its targets_from defaults to the run's)
    targets: Literal["reference", "teacher_beam"] = "reference"
    targets_from: str | None = None

    # settings left out of the section's dumps at their defaults, so that the keys of stages
    # that hash the section stay what they were before the settings existed
    omitted_when_default: ClassVar[tuple] = ()

    @pydantic.model_serializer(mode="wrap")
    def _omit_reference_targets(self, handler):
        # the default (references) is left out of dumps, so the keys of stages that hash the
        # section stay what they were before these settings existed
        data = handler(self)
        if self.targets == "reference" and self.targets_from is None and isinstance(data, dict):
            data.pop("targets", None)
            data.pop("targets_from", None)
        # settings a section class names as left out at their defaults (a divergence's)
        return without_omitted_defaults(self, data)


def without_omitted_defaults(section, data):
    """``data`` (a dump of ``section``) without the settings ``section.omitted_when_default``
    names where they hold their defaults: the keys of stages that hash the section stay what
    they were before those settings existed, and a dumped spec reloads."""
    for name in section.omitted_when_default:
        if isinstance(data, dict) and getattr(section, name) == type(section).model_fields[name].default:
            data.pop(name, None)
    return data


class Method:
    """How a student learns: registered by name (the value of ``distill.method``).

    Every hook takes the run context (:class:`tfkd.context.RunContext`) first and reads the
    spec from it (``context.spec``: the view of the stage being planned or run, a variant's
    say). A method must implement one hook, :meth:`make_trainer`; the others have defaults.

    - Spec section and checks: :attr:`spec_schema` (a pydantic model extending
      :class:`MethodSpec`), :attr:`loss_terms`, :meth:`default_loss_weights`, :attr:`requires`
      (the task abilities it needs, :mod:`tfkd.tasks.base`), :meth:`check`,
      :meth:`check_variant`, :meth:`decoded_targets_problem`.
    - Stage plan: :meth:`plan_stages` (the stages it adds before training), :meth:`extend_plan`
      (stages placed among the run's train stages: one that reads another student of the run),
      :meth:`check_plan`, :meth:`train_inputs` (the stages a train stage reads),
      :meth:`train_config` (what of the spec keys a train stage), :attr:`compares_with_baseline`,
      :attr:`baseline_by_default`.
    - Data and trainer: :meth:`train_dataset`, :meth:`train_columns`, :meth:`map_train_batches`,
      :meth:`initialize_student`, :meth:`make_trainer`.
    - What is saved and reported: :meth:`student_to_save`, :meth:`teacher_row`.

    Keep this class free of TensorFlow imports at module level (import inside the methods), so
    specs validate without it.
    """

    name = None
    spec_schema = MethodSpec
    # the optimised loss terms, in the order the paper writes them
    loss_terms = ()
    # the task abilities (classes of tfkd.tasks.base) a task must have for this method
    requires = ()
    # whether a run offers the ``baseline`` stage: the same student trained by the default
    # method. False for methods whose student cannot be trained that way (its comparison
    # models are the spec's ``variants``)
    compares_with_baseline = True
    # whether ``tfkd run`` trains the baseline without being asked (``stages`` or ``--stages``):
    # for methods whose paper tables start with it
    baseline_by_default = False

    # ------------------------------------------------------------------ spec section and checks

    def default_loss_weights(self, section):
        """The paper's weights, from the section's own settings (e.g. ``alpha``)."""
        return {name: 1.0 for name in self.loss_terms}

    def loss_weights(self, section):
        return dict(section.loss_weights) if section.loss_weights is not None else self.default_loss_weights(section)

    def check(self, context):
        """Problems that need more than the section: ``[(key path, message)]``. The base
        checks the loss weights and the task's abilities (:attr:`requires`)."""
        from tfkd.registry import did_you_mean

        problems = []
        section = context.spec.distill
        for ability in self.requires:
            if not isinstance(context.task, ability):
                problems.append(
                    (
                        ("distill", "method"),
                        f"method {self.name} needs a task {ability.needed_for}; task {context.spec.task} is not one",
                    )
                )
        for name, weight in (section.loss_weights or {}).items():
            if name not in self.loss_terms:
                problems.append(
                    (
                        ("distill", "loss_weights", name),
                        f'unknown loss term "{name}" of method {self.name};{did_you_mean(name, self.loss_terms)}'
                        f" Terms: {', '.join(self.loss_terms)}",
                    )
                )
            elif weight < 0:
                problems.append((("distill", "loss_weights", name), f"expected a weight >= 0, got {weight}"))
        if section.loss_weights is not None and not any(section.loss_weights.values()):
            problems.append((("distill", "loss_weights"), "at least one weight must be > 0"))
        return problems

    def check_variant(self, context, variant):
        """Problems of a variant trained by this same method (``variant``: its resolved spec)
        beside the run (``context.spec``): ``[(key path, message)]``. The method plans the
        stages its variants need (:meth:`plan_stages`); a method whose stages read settings a
        variant could change says here which it may not (:func:`shared_stage_problems`)."""
        return []

    def decoded_targets_problem(self, context):
        """``None`` if this method's student can train on a teacher's decoded outputs
        (``distill.targets: teacher_beam``) with these settings; else why not (one line)."""
        return None

    # ------------------------------------------------------------------ stage plan

    def plan_stages(self, context):
        """The :class:`tfkd.plan.PlannedStage` entries this method adds before the train
        stages, in the order they run, for every train stage of the run it trains
        (``context.method_specs()``: the run's and its variants')."""
        return []

    def extend_plan(self, context, plan):
        """Add stages that go among the run's train stages to the :class:`tfkd.plan.RunPlan`
        (built by :func:`tfkd.plan.plan_run`, after the task's own :meth:`Task.extend_plan`,
        before ``train.seeds``' copies, which then depend on what the stage they copy depends
        on): a stage that reads a student of the run (a teacher trained as ``baseline`` or a
        variant) goes after that student's stages, and the train stages reading it depend on it
        (:meth:`tfkd.plan.RunPlan.insert`, :meth:`~tfkd.plan.RunPlan.add_dependency`). The
        stages :meth:`plan_stages` adds run before every train stage. Default: none."""

    def check_plan(self, context, plan):
        """Problems of the whole run's plan (every variant resolved): ``[(variant or None, key
        path in that spec, message)]``, each raised as the spec's one-line error at the
        variant's (or the run's) setting. For settings that name other stages, say: one that
        does not exist, or runs after the stage that reads it. Default: none."""
        return []

    def train_inputs(self, context):
        """The stages (beyond the vocabulary) whose output a train stage with this spec reads."""
        return ()

    def train_config(self, context):
        """What of the spec determines the trained student, besides student/train/data."""
        section = context.spec.distill
        return {"distill": section.model_dump(mode="json"), "loss_weights": self.loss_weights(section)}

    # ------------------------------------------------------------------ data and trainer

    def train_dataset(self, context, stage_name, columns=None):
        """The training batches before :meth:`map_train_batches`: the task's, by default (a
        method that trains on extra examples, such as teacher-labelled sentences, adds them)."""
        return context.task.train_dataset(context, stage_name, columns=columns)

    def train_columns(self, context, stage_name):
        """Extra training columns: ``None``, or a ``tf.data.Dataset`` of dicts, each with
        ``"id"`` (the example's index in the task's training split) and the columns; the train
        stage reads examples in this dataset's order (it is streamed, e.g. from a cache)."""
        return None

    def map_train_batches(self, context, dataset):
        """Training batches as the trainer reads them: a method adds per-batch columns drawn
        in the tf.data pipeline here (a masked copy of the source, say). Default: unchanged."""
        return dataset

    def initialize_student(self, context, student, stage_name):
        """Load weights into the freshly built ``student`` before training (a pre-trained
        backbone, say); a short description for the log, or ``None``."""
        return None

    def make_trainer(self, context, student):
        """The :class:`tfkd.training.Trainer` for ``student`` (the one hook a method must implement)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ saved and reported

    def student_to_save(self, context, trainer):
        """The model a finished train stage saves (default: the trainer's student)."""
        return trainer.student

    def teacher_row(self, context, results):
        """The teacher's line of the run's comparison table, from the finished stages'
        ``results``: ``None``, or ``{"label", "scores": {split: scores}, "parameters",
        "steps", "seconds"}`` (a method that fine-tunes and evaluates a teacher gives it)."""
        return None


def shared_stage_problems(spec, variant, keys_by_stage):
    """:meth:`Method.check_variant`'s problems of a method whose stages every student of the run
    shares: ``keys_by_stage`` maps each such stage to the ``distill`` settings that key it
    (key paths under ``distill``, such as ``("cache", "temperature")`` or a whole
    ``("finetune",)``); a variant that sets any of them otherwise than the run would silently
    train on the run's stage, so it may not."""
    main, own = spec.distill.model_dump(mode="json"), variant.distill.model_dump(mode="json")

    def value(section, path):
        for key in path:
            section = section.get(key) if isinstance(section, dict) else None
        return section

    problems = []
    for stage, paths in keys_by_stage.items():
        for path in paths:
            if value(main, path) != value(own, path):
                problems.append(
                    (
                        ("distill", *path),
                        f"every student of the run shares its {stage} stage, which this setting keys; "
                        "set it for the run instead (one run per value)",
                    )
                )
    return problems


__all__ = ["TEACHER_TARGETS", "Method", "MethodError", "MethodSpec", "shared_stage_problems"]
