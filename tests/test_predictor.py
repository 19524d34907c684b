"""tfkd.load: an export and a run directory, called on text from Python, give what tfkd
translate prints."""

import os
import signal
import time

import pytest
from helpers import tfkd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_runs import tiny_exported_run

import tfkd as tfkd_package
from tfkd.errors import SpecError, StageError

SENTENCES = ["Ein Mann fährt Fahrrad.", "", "Zwei Hunde spielen im Schnee."]


@pytest.fixture(scope="module")
def run_and_export(tmp_path_factory, data_dir):
    """The tiny spec's run and its export (shared with tests/exporters/test_exporters.py)."""
    run_dir, saved_model, _ = tiny_exported_run(tmp_path_factory, data_dir)
    return run_dir, saved_model.parent


def test_an_export_and_its_run_translate_alike_from_python(run_and_export, tmp_path):
    run_dir, export = run_and_export
    from_export = tfkd_package.load(str(export))  # a TF Serving base path: its newest version
    from_run = tfkd_package.load(str(run_dir))
    assert from_export.task == from_run.task == "translation"
    assert from_export.path == str(export / "1")
    translations = from_export(SENTENCES)
    assert translations == from_run(SENTENCES)
    assert len(translations) == 3 and translations[1] == ""  # an empty line translates to nothing
    # what tfkd translate prints for the same lines
    (tmp_path / "in.de").write_text("".join(s + "\n" for s in SENTENCES))
    printed = tfkd("translate", str(export), "-i", str(tmp_path / "in.de"))
    assert printed.returncode == 0 and printed.stdout.splitlines() == translations
    assert from_export([]) == []


def test_load_refuses_what_it_cannot_use(run_and_export, tmp_path):
    run_dir, export = run_and_export
    with pytest.raises(StageError, match="no such file or directory"):
        tfkd_package.load(str(tmp_path / "nowhere"))
    with pytest.raises(StageError, match="not a tfkd run directory"):
        tfkd_package.load(str(tmp_path))
    with pytest.raises(SpecError, match="--student baseline: not a student"):
        tfkd_package.load(str(run_dir), student="baseline")
    with pytest.raises(SpecError, match="an export holds one student"):
        tfkd_package.load(str(export), student="baseline")
    with pytest.raises(TypeError, match="list of strings"):
        tfkd_package.load(str(export))("Ein Satz.")


def test_ctrl_c_while_keras_loads_the_student_stops_and_never_reads_as_weights_that_do_not_fit(
    run_and_export, monkeypatch
):
    import keras

    def load_weights_as_keras_does(self, path, *args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the weights file is read
            time.sleep(5)
        except BaseException:  # keras/src/saving/saving_lib.py: each layer's failure collected
            raise ValueError("A total of 3 objects could not be loaded") from None

    monkeypatch.setattr(keras.Model, "load_weights", load_weights_as_keras_does)
    run_dir, _ = run_and_export
    with pytest.raises(KeyboardInterrupt):
        tfkd_package.load(str(run_dir))


@pytest.mark.parametrize(
    "name, damage, expected",
    [
        ("train/student.weights.h5", lambda data: data[:2000], "cannot be read (Unable to synchronously open"),
        ("train/student.json", lambda data: b'{"class_name": ', "cannot be read (Expecting value"),
        ("vocab/target.vocab", lambda data: b"", "not a vocabulary tfkd can read ("),
    ],
)
def test_a_damaged_file_of_a_finished_run_is_one_line_naming_it(run_and_export, tmp_path, name, damage, expected):
    import shutil

    from tfkd.errors import DataError

    run_dir, _ = run_and_export
    copy = tmp_path / "loaded"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("export"))
    path = copy / name
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises((StageError, DataError)) as error:
        tfkd_package.load(str(copy))
    message = str(error.value)
    assert message.startswith(f"{path}: {expected}") and "\n" not in message
    again = "learn it anew" if "vocab" in name else "train it anew"
    assert message.endswith(f"delete {path.parent} and run the spec again to {again}")


@pytest.mark.parametrize("where", ["run", "export"])
def test_inputs_longer_than_the_student_reads_are_counted_in_one_warning(run_and_export, caplog, where):
    # the export counts each line's tokens in its source_length signature, as the run does
    path = str(run_and_export[0 if where == "run" else 1])
    long = " ".join(["Ein Mann fährt Fahrrad und"] * 200)  # 1,000 words: far beyond data.max_tokens 40
    with caplog.at_level("WARNING", logger="tfkd"):
        translations = tfkd_package.load(path)([long, SENTENCES[0], long[:60]])
    warnings = [r.getMessage() for r in caplog.records if r.name == "tfkd" and r.levelname == "WARNING"]
    assert len(translations) == 3 and len(warnings) == 1, warnings
    assert warnings[0].startswith(
        "1 of 3 inputs are longer than the 40 tokens the student reads (data.max_tokens) and are read "
        "from their first 40: inputs 1 (the longest has "
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="tfkd"):
        tfkd_package.load(path)(SENTENCES)
    assert not [r for r in caplog.records if r.name == "tfkd" and r.levelname == "WARNING"]


def test_an_export_counts_source_tokens_as_the_run_and_tfkd_translate_on_it_warns(run_and_export, tmp_path):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from tfkd.data import tokenize_to_ragged
    from tfkd.pipeline import open_run

    run_dir, export = run_and_export
    _, _, context = open_run(run_dir)
    lines = [" ".join(["Ein Mann fährt Fahrrad und"] * n) for n in (0, 1, 7, 30)]
    counted = tf.saved_model.load(str(export / "1")).signatures["source_length"](source=tf.constant(lines))
    tokenizer = context.task.load_tokenizers(str(run_dir / "vocab")).source
    expected = tokenize_to_ragged(tokenizer, lines).row_lengths().numpy()
    assert counted["source_tokens"].numpy().tolist() == expected.tolist() and expected[3] > 40 > expected[2]
    (tmp_path / "in.de").write_text("".join(line + "\n" for line in lines))
    out = tfkd("translate", str(export), "-i", str(tmp_path / "in.de"))
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 4, out.stderr[-2000:]
    warned = [line for line in out.stderr.splitlines() if " W " in line]
    assert len(warned) == 1 and "1 of 4 inputs are longer than the 40 tokens" in warned[0], out.stderr


def test_long_inputs_whole_reads_sources_up_to_the_student_s_positional_range(run_and_export, caplog):
    import tensorflow as tf

    from tfkd.pipeline import open_run
    from tfkd.stages import load_student
    from tfkd.tasks.translation import TranslationDecode

    assert "long_inputs" not in TranslationDecode().key()  # the default keeps the evaluate stages' keys
    assert TranslationDecode(long_inputs="whole").key()["long_inputs"] == "whole"
    run_dir, _ = run_and_export
    _, _, context = open_run(run_dir)
    student = load_student(context)
    cut = context.task.translator(context, student)
    whole = context.task.translator(context, student, context.spec.decode.model_copy(update={"long_inputs": "whole"}))
    assert (
        (cut.max_tokens, whole.max_tokens, whole.max_target_length) == (40, 256, 256) == (40, *[student.max_length] * 2)
    )
    long = " ".join(["Ein Mann fährt Fahrrad und"] * 20)  # about 100 source tokens
    widths = [
        int(tf.function(lambda s, t=translator: tf.shape(t._source(s)[0])[1])(tf.constant([long])))
        for translator in (cut, whole)
    ]
    assert widths[0] == 41 and 80 < widths[1] <= 257  # (one padding position)
    with caplog.at_level("WARNING", logger="tfkd"):
        translations = whole.translate_all([long, SENTENCES[0]])[0]
    assert len(translations) == 2 and not [r for r in caplog.records if r.name == "tfkd"]
    # beyond the positional range, cut there, and the warning names that limit
    with caplog.at_level("WARNING", logger="tfkd"):
        whole.warn_of_cut_inputs([" ".join(["Ein Mann fährt Fahrrad und"] * 100)])
    [warning] = [r.getMessage() for r in caplog.records if r.name == "tfkd"]
    assert warning.startswith(
        "1 of 1 inputs are longer than the 256 tokens the student reads (the student's positional range, "
        "student.max_length) and are read from their first 256"
    )


# any text: control characters, combining marks, scripts the vocabulary never saw, emoji,
# Unicode line separators, lines far longer than data.max_tokens
ANY_LINE = st.text(max_size=60) | st.text(alphabet="Ein Mann\u2028\x85\r\t\x00\u0301🙂", min_size=200, max_size=600)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(ANY_LINE, min_size=1, max_size=4))
def test_any_text_gives_one_bounded_translation_a_line_and_the_export_gives_the_same(loaded_pair, lines):
    from_run, from_export = loaded_pair
    translations = from_run(lines)
    assert len(translations) == len(lines)
    for translation in translations:
        # one output line per input line, at most max_length target tokens (40 here) in words
        assert isinstance(translation, str) and not set(translation) & set("\n\r\x85\u2028\u2029")
        assert len(translation.split()) <= 40
    assert from_export(lines) == translations


@pytest.fixture(scope="module")
def loaded_pair(run_and_export):
    run_dir, export = run_and_export
    return tfkd_package.load(str(run_dir)), tfkd_package.load(str(export))
