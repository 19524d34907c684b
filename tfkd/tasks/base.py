"""What a task is, and the abilities a method may need of one. Importing this module does not
import TensorFlow.

A task is a :class:`Task`. The abilities below are small mix-ins a task class inherits to
declare what it offers beyond the base contract; a method lists those it needs
(:attr:`tfkd.methods.Method.requires`), and a spec pairing it with a task that lacks one is a
one-line error naming both.
"""

import dataclasses
from typing import Literal

from tfkd.spec import Strict


class DecodeSettings(Strict):
    """What every task's ``decode`` section holds: how a trained student runs wherever it
    predicts (evaluation, selection, a teacher's forward passes, ``tfkd translate`` /
    ``predict``, the report's latency and the export)."""

    # float32, or bfloat16: the student rebuilt under Keras' mixed_bfloat16 policy (float32
    # weights cast to bfloat16 for the matmuls; layer norms, softmaxes and scores in float32)
    precision: Literal["float32", "bfloat16"] = "float32"

    def key(self):
        """This section as a stage key: ``precision`` counts only when it is not float32, so
        the stages of runs made before it was a setting stay done."""
        key = self.model_dump(mode="json")
        if key.get("precision") == "float32":
            del key["precision"]
        return key


class Task:
    """What the student does: registered by name (the spec's ``task``).

    A task owns its spec sections (:attr:`data_schema`, :attr:`decode_schema`,
    :attr:`evaluate_schema`), reading and tokenizing a split, batching, the student and its
    input signature, the supervised loss terms every method builds on, prediction, the metric
    and the export signature. Generic stages call these; they never look inside the data.

    Examples are addressed by ``id``: their index in the split as read (before any filtering),
    which is how a method's extra columns (a teacher cache) line up with them.

    Keep this class free of TensorFlow imports at module level (import inside the methods).
    """

    name = None
    data_schema = Strict
    decode_schema = DecodeSettings
    evaluate_schema = Strict
    # what the builder passes a student constructor itself (a user student must accept them)
    student_arguments = ()
    # the stages the task may add to a run's plan (:meth:`extend_plan`): no variant takes these names
    stage_names = ()

    def check(self, spec):
        """Problems that need more than one section: ``[(key path, message)]``."""
        return []

    # ------------------------------------------------------------------ stage keys

    def data_files(self, spec, splits):
        """Local files the given splits are read from (their content keys the stages)."""
        return []

    def data_key(self, spec, splits):
        """The data settings that determine the examples of ``splits`` (paths and names of
        local files excluded: their content is hashed)."""
        raise NotImplementedError

    def batching_key(self, spec):
        """The data settings that shape training batches (size, bucketing, shuffling)."""
        return {}

    def vocab_config(self, spec):
        raise NotImplementedError

    # ------------------------------------------------------------------ stage plan

    def extend_plan(self, context, plan):
        """Add the task's own stages to the run's :class:`tfkd.plan.RunPlan` (built by
        :func:`tfkd.plan.plan_run`; the names it may add are :attr:`stage_names`). Default: none."""

    def check_decoded_targets(self, spec, located):
        """Sequence-level KD (``distill.targets: teacher_beam``: a train stage learns from a
        teacher's decoded outputs instead of the references): a task that plans the stage
        decoding them checks the settings here, raising the spec's one-line error
        (``located.error(key path, message)``, or :func:`tfkd.spec.targets_error` for a
        variant's). Default: the task cannot, and says so where a train stage asks for it."""
        from tfkd.spec import TEACHER_TARGETS, targets_error

        for variant, own in [(None, spec), *((name, spec.variant(name)) for name in spec.variants or {})]:
            if own.distill.targets == TEACHER_TARGETS or own.distill.targets_from is not None:
                raise targets_error(
                    located,
                    variant,
                    "targets",
                    f"task {spec.task} cannot train on a teacher's decoded outputs; use targets: reference",
                )

    # ------------------------------------------------------------------ stages

    def build_vocabulary(self, context, workdir):
        """Write the vocabulary files into ``workdir``; a dict of results."""
        raise NotImplementedError

    def load_tokenizers(self, vocab_dir):
        raise NotImplementedError

    def train_dataset(self, context, stage_name, columns=None):
        """Shuffled, repeated training batches ``(inputs, targets)``; ``columns`` is a method's
        stream of extra columns keyed by ``id`` (see :meth:`tfkd.methods.Method.train_columns`)."""
        raise NotImplementedError

    def valid_dataset(self, context, stage_name):
        """Validation batches, or ``None`` without a validation split."""
        raise NotImplementedError

    def example_ids(self, context, split, stage_name):
        """The ids of the examples of ``split`` the student trains on (after filtering)."""
        raise NotImplementedError

    def describe_data(self, context, stage_name):
        """One line for the log: how much training (and validation) data there is."""
        return ""

    def build_student(self, spec, tokenizers):
        raise NotImplementedError

    def label_weights(self, student, labels):
        """1.0 where ``labels`` (the second element of a training batch) hold a label the loss
        reads, 0.0 at padding: here, labels ``>= 0``."""
        from keras import ops

        return ops.cast(ops.greater_equal(ops.cast(labels, "int32"), 0), "float32")

    def student_inputs(self, tokenizers):
        """A small batch of inputs that builds the student (before loading weights)."""
        raise NotImplementedError

    def supervised_terms(self, student, data, training, label_smoothing):
        """``(outputs, {name: LossTerm}, size)``: the student's outputs on a batch, its MLE
        terms (``xe``, optimised; ``nll``, reported) and the batch size for throughput."""
        raise NotImplementedError

    def valid_metric(self, context, student):
        """``None`` or a callable returning ``{name: value}`` on a few validation examples,
        shown during training (e.g. greedy BLEU)."""
        return None

    def evaluate(self, context, student, split, workdir):
        """Predict ``split`` with ``student``, write the predictions into ``workdir``, and
        return the scores (a dict with ``"score"``, the headline number, and ``"metric"``)."""
        raise NotImplementedError

    def export(self, context, student, path):
        """Write a SavedModel that takes raw text to ``path``."""
        raise NotImplementedError

    def predictor(self, context, student):
        """A callable: a list of input lines -> a list of output lines (``tfkd predict``)."""
        raise NotImplementedError

    def nbest_predictor(self, context, student, nbest):
        """``tfkd translate --nbest N``: a callable, a list of input lines -> per line a list of
        up to N ``(output line, score)``, best first; ``None`` when the task's model gives one
        output per input. Raises ``ValueError`` when the spec's decoder cannot give N."""
        return None

    def paired_test(self, context, split, baseline_dirs, candidate_dirs):
        """The difference between two students on ``split`` with its 95% confidence interval
        and p-value by paired bootstrap resampling (``{metric: result}``, see
        :mod:`tfkd.significance`), from what their evaluate stages wrote into
        ``baseline_dirs`` and ``candidate_dirs`` (one folder per seed, paired by position);
        ``None`` when the task has no such test."""
        return None

    def score_lines(self, evaluate, predictions, references):
        """``tfkd translate --reference``: the task's metric of output lines against reference
        lines (``evaluate``: the spec's ``evaluate`` section, the settings an export recorded
        under ``evaluate`` in its ``tfkd.json`` as a dict, or ``None`` for the defaults), as one
        line of text; ``None`` when the task's outputs have no reference to compare with."""
        return None

    # ------------------------------------------------------------------ run report

    def report(self, context, students, out_dir):
        """The task's part of a run's report (``tfkd report``, :func:`tfkd.report.build_report`):
        a :class:`TaskReport` of sections of its own (a translation's BLEU by source length, a
        classifier's confusion matrices, ...) and a few inputs of the test split that the
        report times each student's :meth:`predictor` on (batch 1).

        ``students``: the run's :class:`tfkd.report.ReportStudent` objects, finished or not (their
        ``evaluate_dir`` is ``None`` until their evaluate stage finished). Figures are files
        the task writes into ``out_dir`` (:mod:`tfkd.report.figures` draws and saves them);
        fragments are HTML (:mod:`tfkd.report.html` escapes and builds tables). What a section
        cannot show (a missing file, a corpus that cannot be read) it says in its fragment
        instead of raising. Default: no sections and no inputs."""
        return TaskReport()


@dataclasses.dataclass
class ReportSection:
    """A section of a run's report: a title, an HTML fragment, and the figure files it shows
    (names relative to the report's folder; a name or ``(name, caption)``), placed after the
    fragment."""

    title: str
    html: str
    figures: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TaskReport:
    """What :meth:`Task.report` gives a run's report: its ``sections`` and ``sample_inputs``, a
    few raw inputs of the test split (lines the task's :meth:`Task.predictor` takes) to time the
    students on; ``None``, with ``inputs_note`` saying why, when it has none."""

    sections: list = dataclasses.field(default_factory=list)
    sample_inputs: list | None = None
    inputs_note: str | None = None


# ---------------------------------------------------------------------------- abilities


class AlignedPairs:
    """Its examples are source/target token sequences (a seq2seq student): the C-MLM teacher,
    the encoder's MLM distillation and AB-Net read them."""

    needed_for = "of aligned source/target pairs (translation)"

    def corpus(self, context, split):
        """The split's text pairs (``.sources``, ``.targets``), before tokenization."""
        raise NotImplementedError

    def tokenized(self, context, split, stage_name):
        """The split's pairs as token ids (``.sources``, ``.targets``, ``.ids``), memoised."""
        raise NotImplementedError

    def tokenized_with(self, context, split, source_tokenizer, target_tokenizer, max_tokens, stage_name):
        """The split's pairs as token ids of other tokenizers (a teacher's), empty pairs and
        pairs over ``max_tokens`` dropped as :meth:`tokenized` drops them."""
        raise NotImplementedError


class Pretrainable:
    """Its students wrap a pretrained backbone, which LightPAFF pre-trains by the task's
    :attr:`pretraining_objective` (``masked_lm``, ``causal_lm`` or ``masked_seq2seq``) and
    builds a teacher around (:meth:`build_teacher`)."""

    needed_for = "whose students wrap a pretrained backbone and that can pre-train"
    pretraining_objective = None

    def build_teacher(self, spec, tokenizers, backbone):
        """A model of the student's kind around a pretrained ``backbone`` (a keras-hub
        backbone with the vocabulary of ``tokenizers``): the teacher a method fine-tunes."""
        raise NotImplementedError


class ClassDistributions:
    """It predicts a distribution over classes per text, which a teacher's predictions can be
    cached from (LightPAFF's fine-tuning distillation of a classifier)."""

    needed_for = "that predicts class distributions"

    def corpus(self, context, split):
        """The split's rows (``.texts``, ``.labels``)."""
        raise NotImplementedError

    def predict_probabilities(self, context, model, texts):
        """``[len(texts), classes]`` probabilities of ``model`` on raw ``texts``."""
        raise NotImplementedError

    def unused_texts(self, context, split):
        """The texts of ``split`` that the run leaves out (past its ``data.<split>_limit``), in
        order and without their labels: in-domain text a teacher can label."""
        raise NotImplementedError


class TextBatches:
    """It turns raw text into its own training batches (LightPAFF's causal-LM pre-training)."""

    needed_for = "that batches raw text"

    def text_batches(self, context, lines, key, training, seed=None, batch_size=None, block_size=None):
        raise NotImplementedError


class ContinuesText:
    """Its predictions continue the input text: ``tfkd generate`` takes such a run."""

    needed_for = "whose predictions continue the input text"


__all__ = [
    "AlignedPairs",
    "ClassDistributions",
    "ContinuesText",
    "Pretrainable",
    "ReportSection",
    "Task",
    "TaskReport",
    "TextBatches",
]
