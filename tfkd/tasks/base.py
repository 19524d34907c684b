"""What a task is. Importing this module does not import TensorFlow."""

from tfkd.spec import Strict


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
    decode_schema = Strict
    evaluate_schema = Strict
    # what the builder passes a student constructor itself (a user student must accept them)
    student_arguments = ()
    # whether its predictions continue the input text (``tfkd generate`` takes such a run)
    continues_text = False

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

    # ------------------------------------------------------------------ sequence-level KD

    def teacher_targets_problem(self, spec):
        """``None`` if train stages of this task can learn from a teacher's decoded outputs
        (``distill.targets: teacher_beam``); else why not (spec validation reports it)."""
        return (f"task {self.name} cannot train on a teacher's decoded outputs (it has no "
                "teacher_targets_stage); use targets: reference")

    def teacher_targets_stage(self, spec, source, source_spec=None):
        """The :class:`tfkd.runner.Stage` named :data:`tfkd.stage_names.TARGETS_STAGE` that
        decodes the training split with ``source`` and writes the targets the train stages with
        ``targets: teacher_beam`` read instead of the references (same example ids).

        ``source`` is the name of a train stage of the run (then ``source_spec`` maps the run's
        spec to that stage's view of it) or the path of an exported model (``source_spec`` is
        ``None``)."""
        raise NotImplementedError(self.teacher_targets_problem(spec))

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

    def build_teacher(self, spec, tokenizers, backbone):
        """A model of the student's kind around a pretrained ``backbone`` (a keras-hub
        backbone with the vocabulary of ``tokenizers``): the teacher a method fine-tunes for
        this task (LightPAFF's). Tasks whose students wrap such backbones implement it."""
        raise NotImplementedError(f"task {self.name} cannot build a teacher around a pretrained backbone")

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

    def score_lines(self, evaluate, predictions, references):
        """``tfkd translate --reference``: the task's metric of output lines against reference
        lines (``evaluate``: the spec's ``evaluate`` section, ``None`` for its defaults), as one
        line of text; ``None`` when the task's outputs have no reference to compare with."""
        return None
