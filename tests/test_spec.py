"""Spec loading: interpolation, overrides, imports, and one-line errors with file:line."""

import os
import textwrap

import pytest

import tfkd
from tfkd.spec import SpecError, load_spec

GOOD = """\
version: 1
name: tiny
data:
  dir: ${DATA_ROOT:-/data}/multi30k
  src_lang: de
  tgt_lang: en
  batch_tokens: 1024
student:
  kind: transformer
  encoder_layers: 2
  hidden_dim: 32
train:
  steps: 10
  seed: 3
"""


def write(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_good_spec_defaults_and_interpolation(tmp_path, monkeypatch):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.data.dir == "/data/multi30k"
    assert spec.train.steps == 10 and spec.train.warmup_steps == 4000
    assert spec.student_config().encoder_layers == 2
    assert spec.student_config().decoder_layers == 3
    monkeypatch.setenv("DATA_ROOT", "/elsewhere")
    assert load_spec(write(tmp_path, GOOD)).data.dir == "/elsewhere/multi30k"


def test_overrides_are_typed_and_nested(tmp_path):
    spec = load_spec(
        write(tmp_path, GOOD),
        ["train.steps=25", "student.hidden_dim=64", "data.source_tokenizer.lowercase=true",
         "evaluate.splits=[valid, test]"],
    )
    assert spec.train.steps == 25
    assert spec.student_config().hidden_dim == 64
    assert spec.data.source_tokenizer.lowercase is True
    assert spec.evaluate.splits == ["valid", "test"]


def test_override_error_names_the_flag(tmp_path):
    with pytest.raises(SpecError) as e:
        load_spec(write(tmp_path, GOOD), ["train.steps=many"])
    assert str(e.value) == '--set train.steps=many: train.steps: expected an integer, got "many"'


def test_imports_register_a_user_layer(tmp_path):
    (tmp_path / "my_layers.py").write_text(textwrap.dedent("""\
        import keras
        import tfkd

        @tfkd.register("encoder_layer", "spec_test_encoder")
        class SpecTestEncoder(keras.layers.Layer):
            def __init__(self, width=4, **kwargs):
                super().__init__(**kwargs)
                self.width = width
            def call(self, inputs, padding_mask=None, training=None):
                return inputs
        """))
    text = GOOD.replace("student:\n", "imports: [my_layers]\nstudent:\n  encoder_layer: {kind: spec_test_encoder, width: 8}\n")
    spec = load_spec(write(tmp_path, text))
    assert spec.student_config().encoder_layer.kwargs == {"width": 8}
    bad = text.replace("width: 8", "widht: 8")
    with pytest.raises(SpecError, match='unknown argument "widht" for SpecTestEncoder; did you mean "width"'):
        load_spec(write(tmp_path, bad, "bad.yaml"))


# (spec text, expected exact message with {path} for the file)
BAD_SPECS = [
    # 1 unknown top-level key with a hint
    (GOOD + "trian:\n  steps: 3\n",
     '{path}:15: trian: unknown key "trian"; did you mean "train"? Valid keys: data, decode, distill, evaluate, export, imports, name, run_dir, stages, student, teacher, train, version'),
    # 2 unknown nested key
    (GOOD.replace("  seed: 3", "  sead: 3"),
     '{path}:14: train.sead: unknown key "sead"; did you mean "seed"? Valid keys: adam_beta_1, adam_beta_2, adam_epsilon, checkpoint_every, clip_norm, label_smoothing, learning_rate, log_every, precision, seed, steps, strategy, valid_bleu_sentences, warmup_steps'),
    # 3 type error on a student field (the student's own schema)
    (GOOD.replace("encoder_layers: 2", "encoder_layers: six"),
     '{path}:10: student.encoder_layers: expected an integer, got "six"'),
    # 4 positive integer
    (GOOD.replace("steps: 10", "steps: -5"),
     "{path}:13: train.steps: expected a number > 0, got -5"),
    # 5 unknown student kind with a hint and the choices
    (GOOD.replace("kind: transformer", "kind: transfomer"),
     '{path}:9: student.kind: unknown student "transfomer"; did you mean "transformer"? Choices: lstm, transformer'),
    # 6 literal choice
    (GOOD + "decode:\n  algorithm: bean\n",
     '{path}:16: decode.algorithm: expected one of beam, greedy, got "bean"; did you mean "beam"?'),
    # 7 missing required key
    (GOOD.replace("  src_lang: de\n", ""),
     "{path}:3: data.src_lang: missing required key"),
    # 8 missing environment variable without default
    (GOOD.replace("${DATA_ROOT:-/data}", "${TFKD_TEST_UNSET_VAR}"),
     "{path}:4: data.dir: environment variable TFKD_TEST_UNSET_VAR is not set and ${{TFKD_TEST_UNSET_VAR}} has no default (write ${{TFKD_TEST_UNSET_VAR:-value}} to give one)"),
    # 9 bad boolean
    (GOOD + "evaluate:\n  lowercase: maybe\n",
     '{path}:16: evaluate.lowercase: expected true or false, got "maybe"'),
    # 10 probability bound
    (GOOD.replace("  seed: 3", "  seed: 3\n  label_smoothing: 1.5"),
     "{path}:15: train.label_smoothing: expected a number < 1, got 1.5"),
    # 11 wrong version
    (GOOD.replace("version: 1", "version: 2"),
     "{path}:1: version: expected one of 1, got 2"),
    # 12 a section that is not a mapping
    (GOOD.replace("train:\n  steps: 10\n  seed: 3\n", "train: fast\n"),
     '{path}:12: train: expected a mapping, got "fast"'),
    # 13 invalid YAML
    (GOOD.replace("  hidden_dim: 32", "  hidden_dim: [32"),
     "{path}:12: invalid YAML: expected ',' or ']', but got ':'"),
    # 14 unknown stage
    (GOOD + "stages: [vocab, trian]\n",
     '{path}:15: stages.1: expected one of vocab, teacher_finetune, teacher_cache, baseline, baseline_evaluate, train, evaluate, export, got "trian"; did you mean "train"?'),
    # 15 text source without a directory
    (GOOD.replace("  dir: ${DATA_ROOT:-/data}/multi30k\n", ""),
     '{path}:3: data: source "text" needs "dir" (a folder with {{split}}.{{lang}} files)'),
    # 16 unknown encoder layer
    (GOOD.replace("  hidden_dim: 32", "  hidden_dim: 32\n  encoder_layer: {kind: lstm}"),
     '{path}:12: student.encoder_layer.kind: unknown encoder layer "lstm"; Choices: {encoders}'),
    # 17 unknown strategy
    (GOOD.replace("  seed: 3", "  seed: 3\n  strategy: mirored"),
     '{path}:15: train.strategy: expected one of auto, one_device, mirrored, multi_worker, got "mirored"; did you mean "mirrored"?'),
    # 18 bad name
    (GOOD.replace("name: tiny", "name: my run"),
     "{path}:2: name: expected letters, digits, '_', '.' or '-', got \"my run\""),
    # 19 an import that does not exist
    (GOOD + "imports: [no_such_module_xyz]\n",
     "{path}:15: imports.0: cannot import 'no_such_module_xyz': No module named 'no_such_module_xyz'"),
    # 21 distillation without a teacher
    (GOOD + "distill: {alpha: 0.5}\n",
     "{path}:15: distill: needs a teacher section"),
    # 22 a teacher section with a bad nested value
    (GOOD + "teacher:\n  checkpoint: x\n  cache: {top_k: 0}\n",
     "{path}:17: teacher.cache.top_k: expected a number > 0, got 0"),
    # 20 dropout out of range in the student schema
    (GOOD.replace("  hidden_dim: 32", "  hidden_dim: 32\n  dropout: 2"),
     "{path}:12: student.dropout: expected a number < 1, got 2"),
    # 23 a vocabulary threshold on a learned vocabulary
    (GOOD.replace("  batch_tokens: 1024", "  batch_tokens: 1024\n  target_tokenizer: {kind: learned, min_count: 2}"),
     '{path}:8: data.target_tokenizer: min_count applies to kind "teacher" only (a learned vocabulary has vocab_size)'),
]


@pytest.mark.parametrize("text,expected", BAD_SPECS, ids=[str(i + 1) for i in range(len(BAD_SPECS))])
def test_bad_spec_errors_are_one_exact_line(tmp_path, text, expected, monkeypatch):
    monkeypatch.delenv("TFKD_TEST_UNSET_VAR", raising=False)
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    message = str(e.value)
    assert "\n" not in message
    encoders = ", ".join(tfkd.registry.names("encoder_layer"))  # other tests register more
    assert message == expected.format(path=path, encoders=encoders)


def test_validate_cli_exit_code_and_one_line(tmp_path, capsys):
    from tfkd.cli import main

    good = write(tmp_path, GOOD)
    bad = write(tmp_path, GOOD.replace("steps: 10", "steps: ten"), "bad.yaml")
    assert main(["validate", good]) == 0
    assert main(["validate", good, bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'{bad}:13: train.steps: expected an integer, got "ten"']


def test_repo_specs_validate():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    specs = [os.path.join(repo, "specs", f) for f in os.listdir(os.path.join(repo, "specs")) if f.endswith(".yaml")]
    assert specs
    for path in specs:
        assert isinstance(load_spec(path), tfkd.spec.Spec)
