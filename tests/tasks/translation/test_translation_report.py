"""The translation task's report sections: source-length buckets, sacreBLEU of each bucket and
sentence BLEU, the sentences where the student and the baseline differ most, and what the
sections say when hypotheses or the corpus are missing."""

import sacrebleu
from report_runs import BASELINE, REFERENCES, SOURCES, STUDENT, synthetic_run

from tfkd.report.contents import read_run
from tfkd.tasks.translation import report


def test_length_buckets():
    lengths = [3, 4, 7, 12, 12, 13, 40]
    buckets = report.length_buckets(lengths, width=5, min_count=1)
    assert buckets == [("1-5", [0, 1]), ("6-10", [2]), ("11-15", [3, 4, 5]), ("36-40", [6])]
    # the long tail joins the last bucket holding enough sentences, its label says up to where
    assert report.length_buckets(lengths, width=5, min_count=2) == [
        ("1-5", [0, 1]),
        ("6-10", [2]),
        ("11-40", [3, 4, 5, 6]),
    ]
    assert sum(len(i) for _, i in report.length_buckets(list(range(0, 80)) * 3)) == 240  # none lost; empty ones too
    assert report.length_buckets(list(range(20, 60)) * 3)[0][0] == "11-20"  # 10 wide: a tenth over 30 words
    assert report.length_buckets([]) == []


def test_bucket_bleu_is_sacrebleu_on_each_bucket():
    buckets = [("short", [0, 1, 4]), ("long", [2, 3, 5])]
    scores = report.bucket_bleu(buckets, STUDENT, REFERENCES, lowercase=True, tokenize="13a")
    for (_, indexes), score in zip(buckets, scores):
        expected = sacrebleu.corpus_bleu(
            [STUDENT[i] for i in indexes], [[REFERENCES[i] for i in indexes]], lowercase=True
        )
        assert score == expected.score


def test_the_sentences_that_differ_most():
    ours = report.sentence_bleu(STUDENT, REFERENCES, False, "13a")
    assert round(ours[1], 6) == 100.0
    assert ours[2] == sacrebleu.sentence_bleu(STUDENT[2], [REFERENCES[2]]).score  # effective order: same here
    assert report.most_different([50, 10, 30, 0], [50, 40, 10, 0], count=3) == [1, 2, 0]  # ties: corpus order


def test_the_sections_of_a_run(tmp_path):
    contents = read_run(str(synthetic_run(tmp_path)))
    found = contents.context.task.report(contents.context, contents.students, str(tmp_path))
    assert found.sample_inputs == SOURCES[: report.SAMPLE_INPUTS]
    buckets, differences = found.sections
    assert buckets.title == "BLEU by source length" and (tmp_path / buckets.figures[0][0]).is_file()
    assert "case-insensitive" in buckets.html  # the run's evaluate.lowercase
    rows = differences.html.split("<tr>")[2:]
    assert len(rows) == len(SOURCES) and "+83.0" in rows[0] and BASELINE[1] in rows[0]
    assert "the student is better on 5 sentences, the baseline on 1, equal on 0" in differences.html


def test_missing_hypotheses_and_a_changed_corpus_are_said(tmp_path):
    run = synthetic_run(tmp_path)
    (run / "evaluate" / "test.hyp").unlink()
    (run / "baseline_evaluate" / "test.hyp").write_text("only one line\n")
    contents = read_run(str(run))
    found = contents.context.task.report(contents.context, contents.students, str(tmp_path))
    buckets, differences = found.sections
    assert "student: no test.hyp" in buckets.html
    assert "baseline: test.hyp has 1 lines, the test split 6 (the data changed since it was evaluated)" in buckets.html
    assert "No student has hypotheses to score yet." in buckets.html and not buckets.figures
    assert "No test hypotheses of baseline and student yet." in differences.html


def test_a_corpus_that_cannot_be_read_is_said_and_no_inputs_are_given(tmp_path):
    run = synthetic_run(tmp_path)
    (tmp_path / "data" / "test.de").unlink()
    contents = read_run(str(run))
    found = contents.context.task.report(contents.context, contents.students, str(tmp_path))
    assert found.sample_inputs is None and "test split could not be read" in found.inputs_note
    assert "No BLEU by source length: the test split could not be read" in found.sections[0].html
