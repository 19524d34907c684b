"""``tfkd.report.build_report``: a finished run's page (every figure there, shown and valid
HTML), an unfinished run's page saying what is missing, sections that fail without taking the
page down, and a real browser that opens the page without a console error. The fast tests read
a run directory written by hand (:mod:`report_runs`); the slow ones a small real soft-target
translation run (the real MiniLM teacher), with each student's batch-1 latency measured."""

import os
import re
import shutil

import pytest
from kill_anywhere import shared_straight_run
from report_runs import CHROMIUM, NO_CHROMIUM, check_page, open_in_chromium, synthetic_run

from tfkd import registry
from tfkd.comparison import difference_header
from tfkd.errors import StageError
from tfkd.report import build_report


def test_a_finished_run_gives_a_valid_page_showing_every_figure(tmp_path):
    run = synthetic_run(tmp_path)
    path = build_report(str(run), latency=False)
    assert path == str(run / "report" / "index.html")
    text, images = check_page(path)
    assert "Every stage the spec asks for has finished." in text
    for title in (
        "Stages",
        "Comparison",
        "Size and speed against quality",
        "Training curves",
        "Teacher",
        "BLEU by source length",
        "Where the student and the baseline differ most",
        "Log",
        "Spec",
    ):
        assert f"{title} " in text, title
    assert "could not be built" not in text and "not written" not in text
    # the comparison table is tfkd.comparison's rows, as they come
    assert re.search(r"Comparison student test BLEU .*baseline 20\.00 .*beam 123,456 40 12 -", text)
    assert re.search(r"soft_target \(soft=0\.1 xe=0\.9\) 40\.00 .*beam 123,456", text)
    assert difference_header("baseline", "test") in text  # the run directory was passed: outputs tested
    # the teacher's stages: their results and the cache's kept mass
    assert "val_accuracy 0.4213" in text and "top_k_mass 0.9312" in text
    assert "Latency not measured (--no-latency)." in text
    assert set(images) == {
        "size-speed-quality.png",
        "curves-students.png",
        "curves-baseline.png",
        "curves-train.png",
        "bleu-by-source-length-test.png",
    }
    # written again: the same page, the same files
    assert build_report(str(run), latency=False) == path
    assert check_page(path)[1] == images
    # again once a student is gone: its figures go too, and nothing the page did not show
    (run / "report" / "notes.txt").write_text("mine")
    shutil.rmtree(run / "train")
    shutil.rmtree(run / "evaluate")
    (run / "log.txt").write_text("")  # (the log's lines would still draw its curves)
    text, fewer = check_page(build_report(str(run), latency=False))  # every PNG there is shown
    assert set(fewer) == {"size-speed-quality.png", "bleu-by-source-length-test.png"}
    assert (run / "report" / "notes.txt").read_text() == "mine"


def test_the_report_goes_where_it_is_told(tmp_path):
    run = synthetic_run(tmp_path)
    out = tmp_path / "elsewhere" / "report"
    path = build_report(str(run), str(out), latency=False)
    assert path == str(out / "index.html") and not (run / "report").exists()
    check_page(path)


def test_an_unfinished_run_says_what_is_missing(tmp_path):
    run = synthetic_run(tmp_path, finished=False)
    # latency asked for: the students' files are missing, so nothing is loaded and each says why
    path = build_report(str(run), latency=True)
    text, images = check_page(path)
    assert "This run is not finished" in text
    assert "train: partial (stopped, killed or still running) evaluate: not started" in text
    assert "No comparison table: it needs two evaluated students; 1 is evaluated (not finished: evaluate)." in text
    assert "not measured: its train stage (train) has not finished" in text
    assert "not measured: student.json, student.weights.h5 not in" in text  # the baseline, written by hand
    assert "student: no test.hyp (stage evaluate has not finished)" in text
    assert "No test hypotheses of student yet." in text
    # the stopped student's curves so far, from the log (its folder holds no events)
    assert "student (train), unfinished: the steps so far: from log.txt" in text
    assert "curves-train.png" in images
    assert "error: killed" in text  # the log's last lines


def test_more_seeds_are_more_students(tmp_path):
    run = synthetic_run(tmp_path, seeds=(2, 3))
    text, images = check_page(build_report(str(run), latency=False))
    for label in ("baseline (seed 2)", "student (seed 3)"):
        assert label in text
    assert {"curves-train-s2.png", "curves-baseline-s3.png"} <= set(images)
    # each seed's stages after the first seed's, in the stage list
    assert text.index("train-s2 train finished") < text.index("train-s3 train finished")


def test_a_cache_manifest_without_the_kept_mass_says_so(tmp_path):
    run = synthetic_run(tmp_path, cache_mass=False)
    text, _ = check_page(build_report(str(run), latency=False))
    assert "Its manifest.json does not record the probability mass the top-4 keeps." in text


def test_a_section_that_fails_is_a_note_and_the_page_is_still_written(tmp_path, monkeypatch):
    run = synthetic_run(tmp_path)
    task = registry.lookup("task", "translation")

    def broken(context, students, out_dir):
        raise RuntimeError("no such thing")

    monkeypatch.setattr(task, "report", broken)
    text, images = check_page(build_report(str(run), latency=False))
    assert "This section could not be built: RuntimeError: no such thing" in text
    assert "Comparison" in text and "curves-train.png" in images
    assert "Latency not measured (--no-latency)." in text


def test_not_a_run_directory_is_one_error(tmp_path):
    with pytest.raises(StageError, match=r"nowhere: no such run directory"):
        build_report(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StageError, match=r"empty: not a tfkd run directory \(no spec.yaml\)"):
        build_report(str(tmp_path / "empty"))


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_chromium_opens_the_page_without_a_console_error(tmp_path):
    run = synthetic_run(tmp_path, finished=False)
    errors, images = open_in_chromium(build_report(str(run), latency=False), tmp_path / "profile")
    assert errors == []
    assert images and all(complete and width > 0 for _, complete, width in images), images


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_the_browser_check_sees_a_console_error_and_a_missing_image(tmp_path):
    """The check above can fail: a script error and an image that is not there are seen."""
    path = build_report(str(synthetic_run(tmp_path)), latency=False)
    os.remove(os.path.join(os.path.dirname(path), "curves-train.png"))
    with open(path) as f:
        page = f.read()
    with open(path, "w") as f:
        f.write(page.replace("</body>", "<script>console.error('boom'); missing();</script></body>"))
    errors, images = open_in_chromium(path, tmp_path / "profile")
    assert any("boom" in e for e in errors) and any("missing is not defined" in e for e in errors)
    assert any("curves-train.png" in e for e in errors)
    assert ["curves-train.png", True, 0] in images


# ----------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, data_dir):
    """The small soft-target run on Multi30k with the real MiniLM teacher that
    tests/methods/soft_target/ checks and kills (:func:`kill_anywhere.shared_straight_run`),
    made once a session: this file only reads it."""
    return shared_straight_run("soft_target", tmp_path_factory, data_dir)[0]


@pytest.mark.slow
def test_a_real_run_s_report_with_latency(real_run, tmp_path):
    path = build_report(str(real_run), str(tmp_path / "report"), latency=True)
    text, images = check_page(path)
    assert "Every stage the spec asks for has finished." in text and "could not be built" not in text
    assert set(images) == {
        "size-speed-quality.png",
        "curves-students.png",
        "curves-baseline.png",
        "curves-train.png",
        "curves-teacher_finetune.png",
        "bleu-by-source-length-test.png",
    }
    # curves from the stages' TensorBoard events; the teacher's fine-tuning has its own
    assert "student (train): from train/tensorboard" in text
    assert "teacher_finetune: from teacher_finetune/tensorboard" in text
    # both students timed at batch 1: a median and an interquartile range of milliseconds each
    latencies = re.findall(r"(baseline|student) 55,328 0 (\d+\.\d) \((\d+\.\d)-(\d+\.\d)\) test BLEU", text)
    assert [who for who, *_ in latencies] == ["baseline", "student"], text[:3000]
    assert all(0 < float(low) <= float(ms) <= float(high) for _, ms, low, high in latencies)
    assert "Latency: the median over 8 test inputs" in text
    # the teacher's own numbers, whatever its stages recorded
    assert re.search(r"teacher_finetune result value steps 6 .*val_accuracy", text)
    assert "Top-K cache: top_k 4, temperature 2.000" in text
    if CHROMIUM:
        errors, shown = open_in_chromium(path, tmp_path / "profile")
        assert errors == [] and all(width > 0 for _, _, width in shown)


@pytest.mark.slow
def test_a_real_run_stopped_in_training_says_what_is_missing(real_run, tmp_path):
    """The student's training killed half-way: no student files, no evaluation."""
    run = tmp_path / "straight"
    shutil.copytree(real_run, run)  # (the run is shared: the report tfkd run writes at its end is
    # tests/methods/soft_target/test_soft_target_end_to_end.py's)
    shutil.rmtree(run / "evaluate")
    (run / "train").rename(run / "train.partial")
    for name in ("stage.json", "student.json", "student.weights.h5"):
        (run / "train.partial" / name).unlink()
    text, images = check_page(build_report(str(run), latency=True))
    assert "This run is not finished" in text and "train: partial" in text and "evaluate: not started" in text
    assert "not measured: its train stage (train) has not finished" in text
    assert re.search(r"baseline 55,328 0 \d+\.\d \(\d+\.\d-\d+\.\d\) test BLEU", text)  # the finished one is timed
    assert "student (train), unfinished: the steps so far: from train.partial/tensorboard" in text
    assert "curves-train.png" in images and "No test hypotheses of student yet." in text


def test_against_a_student_adds_its_column_and_a_student_it_cannot_test_against_is_one_error(tmp_path):
    run = synthetic_run(tmp_path)
    text, _ = check_page(build_report(str(run), latency=False, against="student"))
    assert difference_header("baseline", "test") in text
    assert difference_header("student", "test") in text
    assert re.search(r"baseline 20\.00 - BLEU -\d", text)  # the baseline against the student: below it
    with pytest.raises(StageError, match="^'teacher' is not a student of run 'handmade'; its students are baseline"):
        build_report(str(run), latency=False, against="teacher")
    stopped = synthetic_run(tmp_path / "stopped", finished=False)
    with pytest.raises(StageError, match="^--against student: no seed of that student is evaluated in "):
        build_report(str(stopped), latency=False, against="student")
