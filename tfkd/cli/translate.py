"""``tfkd translate`` (alias ``predict``): any task's predictions of text lines, by an export
or a run's student; with ``--reference``, the task's metric of them. ``tfkd generate`` is built
on :func:`predict_lines`."""

import contextlib
import os
import sys

from tfkd.cli.arguments import positive_int
from tfkd.cli.errors import reports_errors
from tfkd.cli.runs import open_finished_run, weights_file
from tfkd.cli.startup import import_tensorflow

# flags of tfkd translate that are shorthands of --set decode.KEY=VALUE
DECODE_FLAGS = {"algorithm": "algorithm", "beam": "beam_size", "length_penalty": "length_penalty"}
CONTINUES_TEXT = "a model that continues text (a language model)"


def register(add):
    # predict is translate under the name other tasks' users look for; a parser of its own, so
    # that its --help says "usage: tfkd predict"
    for name, help_text in (
        ("translate", "translate lines (or any task's predictions) with an export or a run directory"),
        ("predict", "any task's predictions of lines (labels, translations) with an export or a run directory"),
    ):
        _add_arguments(add(name, help_text))


def _add_arguments(parser):
    parser.add_argument(
        "--interactive",
        action="store_true",
        help="predict each stdin line as it arrives (as fairseq-interactive): one line in, one line out, flushed",
    )
    parser.add_argument("model", help="a SavedModel, a TF Serving base path, or a run directory")
    parser.add_argument("-i", "--input", help="input file (default: stdin)")
    parser.add_argument("-o", "--output", help="output file (default: stdout)")
    parser.add_argument(
        "--batch-size", type=positive_int, help="default: the spec's decode.batch_size (kept in the export)"
    )
    parser.add_argument(
        "--student",
        "--stage",
        dest="student",
        help="a run's train stage to translate with (default: train; baseline; a variant's name "
        "uses the variant's student and decode settings)",
    )
    parser.add_argument(
        "--weights",
        metavar="FILE",
        help="a run's student with these weights (tfkd average's output) instead of the stage's",
    )
    parser.add_argument("--algorithm", help="a run's decoder: greedy, beam, mask_predict (decode.algorithm)")
    parser.add_argument("--beam", type=int, metavar="N", help="a run's beam size (decode.beam_size)")
    parser.add_argument(
        "--length-penalty", type=float, metavar="ALPHA", help="a run's beam length penalty (decode.length_penalty)"
    )
    parser.add_argument(
        "--nbest",
        type=positive_int,
        metavar="N",
        help="a run's N best hypotheses per input (beam: N <= beam size; mask_predict: N <= "
        "length candidates), printed as INDEX<tab>SCORE<tab>TEXT lines, best first",
    )
    parser.add_argument(
        "--reference",
        metavar="FILE",
        help="reference lines, one per input line: print the task's metric (sacreBLEU for "
        "translation, with its signature) on stderr",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="decode.KEY=VALUE",
        help="change a decoding setting of a run (e.g. decode.iterations=4, decode.beam_size=5)",
    )
    parser.set_defaults(func=cmd_translate)


@reports_errors
def cmd_translate(args):
    return predict_lines(args)


def predict_lines(args, lines=None, continues_text=False):
    """``tfkd translate`` / ``predict`` (any task's predictions of ``lines``, default: those of
    ``--input`` or stdin) and, with ``continues_text``, ``tfkd generate`` (a model whose
    predictions continue the input). Raises SpecError and run errors for
    :func:`~tfkd.cli.errors.reports_errors`."""
    from tfkd.errors import DataError, SpecError

    check_output_path(args.output)  # before any work: a bad -o must not cost a translation
    if getattr(args, "interactive", False):
        if args.input or getattr(args, "reference", None):
            raise SpecError("--interactive reads stdin line by line; -i and --reference apply to a whole file")
        predict, _, _ = _predictor(args, continues_text)
        return _interactive(args, predict)
    if lines is None:
        lines = read_input(args.input)
    if not lines:
        raise DataError(f"{args.input or 'stdin'}: no input lines (nothing to do)")
    references = None
    if getattr(args, "reference", None):
        references = read_input(args.reference)
        if len(references) != len(lines):
            raise SpecError(
                f"{args.reference}: {len(references)} reference lines for {len(lines)} input lines "
                f"({args.input or 'stdin'}); give one reference per input line"
            )
    predict, task_name, evaluate = _predictor(args, continues_text)
    scorer = _scorer(task_name, evaluate, references) if references is not None else None
    # Keras' progress bar writes to stdout: send it to stderr, keep stdout for the output
    with contextlib.redirect_stdout(sys.stderr):
        outputs = predict(lines)
    text, outputs = _formatted(args, outputs)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as sink:
            sink.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if scorer is not None:  # on stderr: stdout stays the outputs
        print(scorer(outputs), file=sys.stderr)
    return 0


def _predictor(args, continues_text):
    """``(predict, task name, evaluate settings)`` of ``args.model``: an export or a run."""
    flags = _decode_flags(args)
    args.set, args.typed = list(args.set or []) + list(flags), flags
    if not os.path.exists(args.model):
        from tfkd.errors import StageError

        raise StageError(
            f"{args.model}: no such file or directory (give a SavedModel, a TF Serving base path or a run directory)"
        )
    import_tensorflow()
    from tfkd.serving import find_export

    export = find_export(args.model)
    if export:
        return _export_predictor(args, *export, continues_text)
    return _run_predictor(args, continues_text)


def _formatted(args, outputs, first_index=0):
    """``(text to write, one output per input)``: with ``--nbest``, ``INDEX<tab>SCORE<tab>OUTPUT``
    lines, N per input, best first (the best is what ``--reference`` scores); ``INDEX`` counts
    the inputs from 0, the first of ``outputs`` being input ``first_index``."""
    if getattr(args, "nbest", None):
        numbered = enumerate(outputs, first_index)
        text = "".join(f"{i}\t{score:.4f}\t{output}\n" for i, ranked in numbered for output, score in ranked)
        return text, [ranked[0][0] if ranked else "" for ranked in outputs]
    return "".join(o + "\n" for o in outputs), outputs


def _interactive(args, predict):
    """``--interactive``: each stdin line predicted as it arrives (as fairseq-interactive),
    its output written and flushed before the next line is read; until end of input."""
    sink = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    quiet = {"TFKD_QUIET_PROGRESS": "1"}  # no progress bar for one line at a time
    saved = {k: os.environ.get(k) for k in quiet}
    os.environ.update(quiet)
    try:
        for number, line in enumerate(iter(sys.stdin.buffer.readline, b""), 1):
            text = _decoded(line.removesuffix(b"\n"), "stdin", number)
            with contextlib.redirect_stdout(sys.stderr):
                outputs = predict([text])
            sink.write(_formatted(args, outputs, first_index=number - 1)[0])
            sink.flush()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if sink is not sys.stdout:
            sink.close()
    return 0


def _export_predictor(args, exporter, path, continues_text):
    """``(predict, task name, evaluate settings)`` of an export (a SavedModel, a CTranslate2
    folder, ...: what ``exporter`` wrote)."""
    from tfkd.errors import SpecError

    if args.student or args.set or getattr(args, "weights", None) or getattr(args, "nbest", None):
        raise SpecError(
            f"{args.model}: --student, --set, --nbest and the decoding flags apply to a run "
            "directory; an export decodes as it was exported"
        )
    predict, info = exporter.predictor(path, args.batch_size)
    if continues_text and info and info.get("output") != "continuation":
        raise SpecError(
            f"{args.model}: a {info.get('task')} model; tfkd generate needs {CONTINUES_TEXT} "
            "(tfkd predict gives any model's predictions)"
        )
    # the evaluation settings the run scored with (BLEU's casing and tokenizer), if recorded
    return predict, info.get("task"), info.get("evaluate")


def _run_predictor(args, continues_text):
    """``(predict, task name, evaluate section)`` of a run directory's student."""
    from tfkd.errors import SpecError
    from tfkd.stages import load_student

    spec, _, context = open_finished_run(args.model, args.student or "train")
    from tfkd.tasks.base import ContinuesText

    if continues_text and not isinstance(context.task, ContinuesText):
        raise SpecError(
            f"{args.model}: a {spec.task} run; tfkd generate needs {CONTINUES_TEXT} "
            "(tfkd predict gives any run's predictions)"
        )
    own = spec.variant(args.student) if args.student in (spec.variants or {}) else spec
    own = own.model_copy(update={"decode": decode_overrides(own.decode, args.set, args.typed)})
    context = context.with_spec(own)
    student = load_student(context, args.student or "train", weights_file(getattr(args, "weights", None)))
    if getattr(args, "nbest", None):
        try:
            predict = context.task.nbest_predictor(context, student, args.nbest)
        except ValueError as e:
            raise SpecError(f"--nbest {args.nbest}: {e}") from None
        if predict is None:
            raise SpecError(f"--nbest {args.nbest}: a {spec.task} model gives one output per input")
    else:
        predict = context.task.predictor(context, student)
    return predict, spec.task, own.evaluate


def _scorer(task_name, evaluate, references):
    """``outputs -> the task's metric line`` against ``references``; SpecError for a task
    without one."""
    from tfkd import registry
    from tfkd.errors import SpecError
    from tfkd.tasks.base import Task

    task = registry.lookup("task", task_name) if task_name in registry.names("task") else None
    if task is None or type(task).score_lines is Task.score_lines:  # the task has no such metric
        raise SpecError(f"--reference: a {task_name or 'model of unknown task'}'s outputs have no reference metric")
    return lambda outputs: task.score_lines(evaluate, outputs, references)


def _decode_flags(args):
    """``{"decode.KEY=VALUE": the flag as typed}`` of the decoding flags given (``--beam 4``)."""
    return {
        f"decode.{key}={getattr(args, flag)}": f"--{flag.replace('_', '-')} {getattr(args, flag)}"
        for flag, key in DECODE_FLAGS.items()
        if getattr(args, flag, None) is not None
    }


def decode_overrides(decode, assignments, typed=None, command="translate"):
    """``decode`` with ``--set decode.KEY=VALUE`` settings applied and validated; an error
    names the flag as ``typed`` gave it (``--beam 0``), else as ``--set ASSIGNMENT``, and a key
    outside ``decode`` says that ``command`` changes decoding only."""
    import pydantic
    import yaml

    from tfkd.errors import SpecError

    settings = decode.model_dump()
    for assignment in assignments or []:
        shown = (typed or {}).get(assignment, f"--set {assignment}")
        key, sep, raw = assignment.partition("=")
        if not sep or not key.startswith("decode.") or "." in key[len("decode.") :]:
            raise SpecError(f"{shown}: expected decode.KEY=VALUE ({command} changes decoding only)")
        try:
            settings[key[len("decode.") :]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise SpecError(f"{shown}: the value is not valid YAML") from None
        try:
            decode = type(decode).model_validate(settings)
        except pydantic.ValidationError as e:
            raise SpecError(f"{shown}: {_decode_message(e.errors()[0], type(decode), key)}") from None
    return decode


def _decode_message(error, settings_class, key):
    """What a pydantic ``error`` of the decode section says, an unknown key with the closest
    valid one."""
    from tfkd.registry import did_you_mean
    from tfkd.spec import _pydantic_message

    if error["type"] != "extra_forbidden":
        return _pydantic_message(error)
    valid = list(settings_class.model_fields)
    return f"unknown key;{did_you_mean(key[len('decode.') :], valid)} valid keys: {', '.join(valid)}"


def read_input(path):
    """The lines of ``path`` (stdin when ``None``); a :class:`~tfkd.errors.DataError` (exit
    status 1, as every data error) for a file that cannot be read or a line that is not UTF-8
    (naming the file, or stdin, and the line)."""
    from tfkd.errors import DataError

    try:
        if path:
            with open(path, "rb") as source:
                raw = source.read()
        else:
            raw = sys.stdin.buffer.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read input ({e.strerror})") from None
    from tfkd.text_files import split_lines

    return [_decoded(line, path or "stdin", number) for number, line in enumerate(split_lines(raw), 1)]


def _decoded(line, name, number):
    """One input line (bytes, without its newline) as text: a Windows line end dropped,
    invalid UTF-8 a DataError naming ``name`` and the line ``number``."""
    from tfkd.text_files import decode_line

    return decode_line(line.removesuffix(b"\r"), name, number)


def check_output_path(path):
    """A :class:`~tfkd.errors.DataError` unless ``path`` (``-o``) can be written: its folder
    exists and it is not itself a folder. ``None`` (stdout) passes."""
    from tfkd.errors import DataError

    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DataError(f"-o {path}: is a directory; give a file name")
    if not os.path.isdir(folder):
        raise DataError(f"-o {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise DataError(f"-o {path}: not writable")
