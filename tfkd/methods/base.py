"""What a distillation method is. Importing this module does not import TensorFlow."""

from typing import Literal, Optional

import pydantic

from tfkd.errors import MethodError
from tfkd.spec import Strict


class MethodSpec(Strict):
    """The ``distill:`` section every method's schema extends."""

    method: str
    # {term: weight} of the method's loss terms; unset gives the paper's formula
    loss_weights: Optional[dict[str, float]] = None
    # what the train stage's targets are (sequence-level KD, Kim & Rush 2016): the training
    # split's references, or the beam-search translations of its sources by ``targets_from``
    # (a train stage of the run, such as baseline or a variant, or the path of an exported model
    # version folder), written by the task's teacher_translations stage. A variant trains on the
    # references unless it sets targets itself (its targets_from defaults to the run's)
    targets: Literal["reference", "teacher_beam"] = "reference"
    targets_from: Optional[str] = None

    @pydantic.model_serializer(mode="wrap")
    def _omit_reference_targets(self, handler):
        # the default (references) is left out of dumps, so the keys of stages that hash the
        # section stay what they were before these settings existed
        data = handler(self)
        if self.targets == "reference" and self.targets_from is None and isinstance(data, dict):
            data.pop("targets", None)
            data.pop("targets_from", None)
        return data


class Method:
    """How a student learns: registered by name (the value of ``distill.method``).

    A method owns its spec section (:attr:`spec_schema`, a pydantic model extending
    :class:`MethodSpec`), the stages it adds before training (:meth:`stages`, named in
    :attr:`stage_names`), the extra batch columns its trainer reads (:meth:`train_columns`),
    its trainer (:meth:`make_trainer`, a :class:`tfkd.training.Trainer`) and so which
    variables train, and what a trained student saves (:meth:`student_to_save`).

    Keep this class free of TensorFlow imports at module level (import inside the methods), so
    specs validate without it.
    """

    name = None
    spec_schema = MethodSpec
    # the optimised loss terms, in the order the paper writes them
    loss_terms = ()
    # every stage this method can add, in the order they run (before the student's train stage)
    stage_names = ()
    # whether a run offers the ``baseline`` stage: the same student trained by the default
    # method. False for methods whose student cannot be trained that way (its comparison
    # models are the spec's ``variants``)
    compares_with_baseline = True
    # whether ``tfkd run`` trains the baseline without being asked (``stages`` or ``--stages``):
    # for methods whose paper tables start with it
    baseline_by_default = False

    def default_loss_weights(self, section):
        """The paper's weights, from the section's own settings (e.g. ``alpha``)."""
        return {name: 1.0 for name in self.loss_terms}

    def loss_weights(self, section):
        return dict(section.loss_weights) if section.loss_weights is not None else self.default_loss_weights(section)

    def check(self, spec):
        """Problems that need more than the section: ``[(key path, message)]``."""
        problems = []
        section = spec.distill
        for name, weight in (section.loss_weights or {}).items():
            if name not in self.loss_terms:
                from tfkd.registry import did_you_mean

                problems.append((("distill", "loss_weights", name),
                                 f'unknown loss term "{name}" of method {self.name};{did_you_mean(name, self.loss_terms)}'
                                 f" Terms: {', '.join(self.loss_terms)}"))
            elif weight < 0:
                problems.append((("distill", "loss_weights", name), f"expected a weight >= 0, got {weight}"))
        if section.loss_weights is not None and not any(section.loss_weights.values()):
            problems.append((("distill", "loss_weights"), "at least one weight must be > 0"))
        return problems

    def stage_names_for(self, section, task=None):
        """The stages a run with this ``distill`` section and ``task`` (a :class:`tfkd.tasks.Task`)
        has (default: all of :attr:`stage_names`; a method whose settings choose between stages
        narrows them)."""
        return self.stage_names

    def stages(self, spec):
        """The :class:`tfkd.runner.Stage` objects named by :meth:`stage_names_for`."""
        return []

    def teacher_targets_problem(self, section):
        """``None`` if this method's student can train on a teacher's decoded outputs
        (``distill.targets: teacher_beam``) with these settings; else why not (one line)."""
        return None

    def check_variant(self, spec, variant):
        """Problems of a variant trained by this same method (``variant``: its resolved spec)
        beside the run ``spec``: ``[(key path, message)]``. The run adds the method stages a
        variant's settings need (see :func:`tfkd.stage_names.method_stage_names`); a method
        whose stages read settings a variant could change says here which it may not."""
        return []

    def train_dependencies(self, spec):
        """Stages (beyond the vocabulary) whose output the train stage reads."""
        return ()

    def train_config(self, spec):
        """What of the spec determines the trained student, besides student/train/data."""
        return {"distill": spec.distill.model_dump(mode="json"), "loss_weights": self.loss_weights(spec.distill)}

    def train_columns(self, spec, context, stage_name):
        """Extra training columns: ``None``, or a ``tf.data.Dataset`` of dicts, each with
        ``"id"`` (the example's index in the task's training split) and the columns; the train
        stage reads examples in this dataset's order (it is streamed, e.g. from a cache)."""
        return None

    def map_train_batches(self, spec, context, dataset):
        """Training batches as the trainer reads them: a method adds per-batch columns drawn
        in the tf.data pipeline here (a masked copy of the source, say). Default: unchanged."""
        return dataset

    def train_dataset(self, spec, context, stage_name, columns=None):
        """The training batches before :meth:`map_train_batches`: the task's, by default (a
        method that trains on extra examples, such as teacher-labelled sentences, adds them)."""
        return context.task.train_dataset(context, stage_name, columns=columns)

    def initialize_student(self, spec, context, student, stage_name):
        """Hook: load weights into the freshly built ``student`` before training (a
        pre-trained backbone, say); a short description for the log, or ``None``."""
        return None

    def make_trainer(self, spec, task, student, context):
        """The :class:`tfkd.training.Trainer` for ``student``."""
        raise NotImplementedError

    def teacher_row(self, spec, results):
        """The teacher's line of the run's comparison table, from the finished stages'
        ``results``: ``None``, or ``{"label", "scores": {split: scores}, "parameters",
        "steps", "seconds"}`` (a method that fine-tunes and evaluates a teacher gives it)."""
        return None

    def student_to_save(self, trainer):
        """The model a finished train stage saves (default: the trainer's student)."""
        return trainer.student


__all__ = ["Method", "MethodError", "MethodSpec"]
