"""The translation task's part of a run's report (:meth:`tfkd.tasks.Task.report`): sacreBLEU by
source-length bucket for every evaluated student (as ``cmlm_kd.txt``'s Figure 2 shows BLEU by
length), and the sentences where the distilled student and the baseline differ most by
sentence-level BLEU, with source, reference and both hypotheses. Hypotheses are the evaluate
stages' ``<split>.hyp`` files; sources and references are read from the run's data."""

import os

import sacrebleu

from tfkd.report import figures
from tfkd.report.html import escape, note, number, paragraph, table
from tfkd.tasks.base import ReportSection, TaskReport

SAMPLE_INPUTS = 8  # test sources each student is timed on
DIFFERING = 10  # sentences shown where the student and the baseline differ most
MIN_BUCKET = 10  # sentences the last bucket gathers at least (longer ones join it)


def scored_split(spec):
    return "test" if "test" in spec.evaluate.splits else spec.evaluate.splits[0]


def read_hypotheses(student, split):
    """The student's hypotheses of ``split`` (``None``: its evaluate stage has not finished or
    did not write them)."""
    if student.evaluate_dir is None:
        return None
    path = os.path.join(student.evaluate_dir, f"{split}.hyp")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def length_buckets(lengths, width=None, min_count=MIN_BUCKET):
    """``[(label, [sentence indexes])]``: sources by length in words, in buckets ``width``
    words wide (5, or 10 when a tenth of the sources are over 30 words), labelled ``FIRST-LAST``;
    the buckets past the last that holds ``min_count`` sentences join it. Empty buckets are left
    out."""
    if not lengths:
        return []
    if width is None:
        ordered = sorted(lengths)
        width = 10 if ordered[int(0.9 * (len(ordered) - 1))] > 30 else 5
    top = max(lengths)
    edges = list(range(0, top + width, width))  # bucket b: (edges[b], edges[b] + width]
    members = [[i for i, n in enumerate(lengths) if edge < max(n, 1) <= edge + width] for edge in edges]
    while len(members) > 1 and len(members[-1]) < min_count:
        last = members.pop()
        members[-1] = members[-1] + last
        edges.pop()
    buckets = []
    for edge, indexes in zip(edges, members):
        if indexes:  # the last may have gathered the longer ones: its label says up to where
            buckets.append((f"{edge + 1}-{max(edge + width, max(lengths[i] for i in indexes))}", sorted(indexes)))
    return buckets


def bucket_bleu(buckets, hypotheses, references, lowercase, tokenize):
    """sacreBLEU of each bucket's sentences."""
    metric = sacrebleu.metrics.BLEU(lowercase=lowercase, tokenize=tokenize)
    return [
        metric.corpus_score([hypotheses[i] for i in indexes], [[references[i] for i in indexes]]).score
        for _, indexes in buckets
    ]


def sentence_bleu(hypotheses, references, lowercase, tokenize):
    """sacreBLEU's sentence BLEU (effective order) of each hypothesis."""
    metric = sacrebleu.metrics.BLEU(lowercase=lowercase, tokenize=tokenize, effective_order=True)
    return [metric.sentence_score(h, [r]).score for h, r in zip(hypotheses, references)]


def most_different(student_scores, baseline_scores, count=DIFFERING):
    """The indexes of the ``count`` sentences whose sentence BLEU differs most between the two
    (largest absolute difference first; ties in corpus order)."""
    order = sorted(range(len(student_scores)), key=lambda i: (-abs(student_scores[i] - baseline_scores[i]), i))
    return order[:count]


def translation_report(task, context, students, out_dir):
    spec = context.spec
    split = scored_split(spec)
    try:
        corpus = task.corpus(context, split)
    except Exception as e:  # a missing or moved corpus: the sections say so
        message = f"the {split} split could not be read ({type(e).__name__}: {e})"
        return TaskReport(
            [ReportSection("BLEU by source length", note(f"No BLEU by source length: {message}."))],
            inputs_note=message,
        )
    hypotheses, missing = {}, []
    for student in students:
        found = read_hypotheses(student, split)
        if found is None:
            missing.append(f"{student.label}: no {split}.hyp (stage {student.evaluate_stage} has not finished)")
        elif len(found) != len(corpus):
            missing.append(
                f"{student.label}: {split}.hyp has {len(found)} lines, the {split} split {len(corpus)} "
                "(the data changed since it was evaluated)"
            )
        else:
            hypotheses[student.name] = found
    evaluate = spec.evaluate
    sections = [
        _buckets_section(students, hypotheses, corpus, split, evaluate, out_dir, missing),
        _differences_section(students, hypotheses, corpus, split, evaluate),
    ]
    return TaskReport(sections, sample_inputs=list(corpus.source[:SAMPLE_INPUTS]))


def _buckets_section(students, hypotheses, corpus, split, evaluate, out_dir, missing):
    title = "BLEU by source length"
    parts = [note(line) for line in missing]
    evaluated = [s for s in students if s.name in hypotheses]
    if not evaluated:
        return ReportSection(title, "".join(parts) + note("No student has hypotheses to score yet."))
    buckets = length_buckets([len(s.split()) for s in corpus.source])
    scores = [
        (s.label, bucket_bleu(buckets, hypotheses[s.name], corpus.target, evaluate.lowercase, evaluate.tokenize))
        for s in evaluated
    ]
    groups = [f"{label}\n({len(indexes)})" for label, indexes in buckets]
    figure, axes = figures.new_figure(max(6.0, 0.9 * len(buckets) + 2), 3.8)
    figures.grouped_bars(axes, groups, scores, "BLEU", f"{split} BLEU by source length (words; sentences)")
    file_name = figures.save(figure, out_dir, f"bleu-by-source-length-{split}")
    header = ["source words", "sentences", *[label for label, _ in scores]]
    rows = [
        [label, str(len(indexes)), *[number(values[b]) for _, values in scores]]
        for b, (label, indexes) in enumerate(buckets)
    ]
    case = "case-insensitive" if evaluate.lowercase else "cased"
    parts.insert(
        0,
        paragraph(
            f"sacreBLEU ({case}, tokenize {evaluate.tokenize}) of the {split} sentences grouped by the length "
            "of their source in whitespace-separated words; each bucket is scored as a corpus of its own."
        ),
    )
    parts.append(table(header, rows))
    return ReportSection(title, "".join(parts), [(file_name, f"{split} BLEU by source length")])


def _differences_section(students, hypotheses, corpus, split, evaluate):
    title = "Where the student and the baseline differ most"
    student = next((s for s in students if s.role == "student" and s.seed is None), None)
    baseline = next((s for s in students if s.role == "baseline" and s.seed is None), None)
    if student is None or baseline is None:
        return ReportSection(title, note("This run trains no baseline beside its student: nothing to compare."))
    absent = [s.label for s in (baseline, student) if s.name not in hypotheses]
    if absent:
        return ReportSection(title, note(f"No {split} hypotheses of {' and '.join(absent)} yet."))
    references = corpus.target
    ours = sentence_bleu(hypotheses[student.name], references, evaluate.lowercase, evaluate.tokenize)
    theirs = sentence_bleu(hypotheses[baseline.name], references, evaluate.lowercase, evaluate.tokenize)
    better = sum(o > t for o, t in zip(ours, theirs))
    worse = sum(o < t for o, t in zip(ours, theirs))
    rows = []
    for i in most_different(ours, theirs):
        rows.append(
            [
                str(i + 1),
                escape(corpus.source[i]),
                escape(references[i]),
                f"{escape(hypotheses[baseline.name][i])}<br><b>{theirs[i]:.1f}</b>",
                f"{escape(hypotheses[student.name][i])}<br><b>{ours[i]:.1f}</b>",
                f"{ours[i] - theirs[i]:+.1f}",
            ]
        )
    intro = paragraph(
        f"Sentence-level BLEU (sacreBLEU, effective order) of the {split} hypotheses: the student is better "
        f"on {better} sentences, the baseline on {worse}, equal on {len(ours) - better - worse}. The "
        f"{len(rows)} sentences with the largest difference:"
    )
    header = ["#", "source", "reference", "baseline (sentence BLEU)", "student (sentence BLEU)", "difference"]
    return ReportSection(title, intro + table(header, rows, numeric={0, 5}, raw_columns={1, 2, 3, 4, 5}))


__all__ = ["bucket_bleu", "length_buckets", "most_different", "sentence_bleu", "translation_report"]
