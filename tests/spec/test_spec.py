"""Spec loading: interpolation, overrides, imports, and one-line errors with file:line."""

import os
import textwrap

import pytest
from helpers import REPO

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
    # an empty variable is no value, as in bash's ${DATA_ROOT:-/data}
    monkeypatch.setenv("DATA_ROOT", "")
    assert load_spec(write(tmp_path, GOOD)).data.dir == "/data/multi30k"


def test_an_empty_environment_variable_without_default_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TFKD_TEST_EMPTY_VAR", "")
    path = write(tmp_path, GOOD.replace("${DATA_ROOT:-/data}", "${TFKD_TEST_EMPTY_VAR}"))
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert str(error.value) == (
        f"{path}:4: data.dir: environment variable TFKD_TEST_EMPTY_VAR is empty and ${{TFKD_TEST_EMPTY_VAR}} has "
        "no default (write ${TFKD_TEST_EMPTY_VAR:-value} to give one)"
    )


def test_overrides_are_typed_and_nested(tmp_path):
    spec = load_spec(
        write(tmp_path, GOOD),
        [
            "train.steps=25",
            "student.hidden_dim=64",
            "data.source_tokenizer.lowercase=true",
            "evaluate.splits=[valid, test]",
        ],
    )
    assert spec.train.steps == 25
    assert spec.student_config().hidden_dim == 64
    assert spec.data.source_tokenizer.lowercase is True
    assert spec.evaluate.splits == ["valid", "test"]


def test_jit_compile_takes_auto_true_or_false(tmp_path):
    for value, expected in (("auto", "auto"), ("true", True), ("false", False)):
        assert load_spec(write(tmp_path, GOOD), [f"train.jit_compile={value}"]).train.jit_compile == expected
    with pytest.raises(SpecError) as e:
        load_spec(write(tmp_path, GOOD), ["train.jit_compile=sometimes"])
    assert str(e.value) == (
        '--set train.jit_compile=sometimes: train.jit_compile: expected one of auto, true, false, got "sometimes"'
    )


def test_sentencepiece_settings_that_do_not_apply_are_refused(tmp_path):
    spec = load_spec(
        write(tmp_path, GOOD), ["data.source_tokenizer.kind=sentencepiece", "data.source_tokenizer.model_type=bpe"]
    )
    assert (spec.data.source_tokenizer.kind, spec.data.source_tokenizer.model_type) == ("sentencepiece", "bpe")
    assert "model_type" in spec.data.source_tokenizer.key() and "model_type" not in spec.data.target_tokenizer.key()
    for flags, message in [
        (
            ["data.source_tokenizer.kind=sentencepiece", "data.source_tokenizer.strip_accents=true"],
            "strip_accents applies to WordPiece vocabularies",
        ),
        (["data.target_tokenizer.model_type=bpe"], 'model_type applies to kind "sentencepiece"'),
    ]:
        with pytest.raises(SpecError) as e:
            load_spec(write(tmp_path, GOOD), flags)
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_override_error_names_the_flag(tmp_path):
    with pytest.raises(SpecError) as e:
        load_spec(write(tmp_path, GOOD), ["train.steps=many"])
    assert str(e.value) == '--set train.steps=many: train.steps: expected an integer, got "many"'
    # a flag that replaces a list the file gives: its items' mistakes are the flag's, not the file's lines
    with pytest.raises(SpecError) as e:
        load_spec(write(tmp_path, GOOD + "stages: [vocab, train]\n", "listed.yaml"), ["stages=[{a: 1}]"])
    assert str(e.value) == '--set stages=[{a: 1}]: stages.0: expected a string, got {"a": 1}'


def test_imports_register_a_user_layer(tmp_path):
    (tmp_path / "my_layers.py").write_text(
        textwrap.dedent("""\
        import keras
        import tfkd

        @tfkd.register("encoder_layer", "spec_test_encoder")
        class SpecTestEncoder(keras.layers.Layer):
            def __init__(self, width=4, **kwargs):
                super().__init__(**kwargs)
                self.width = width
            def call(self, inputs, padding_mask=None, training=None):
                return inputs
        """)
    )
    text = GOOD.replace(
        "student:\n", "imports: [my_layers]\nstudent:\n  encoder_layer: {kind: spec_test_encoder, width: 8}\n"
    )
    spec = load_spec(write(tmp_path, text))
    assert spec.student_config().encoder_layer.kwargs == {"width": 8}
    bad = text.replace("width: 8", "widht: 8")
    with pytest.raises(SpecError, match='unknown argument "widht" for SpecTestEncoder; did you mean "width"'):
        load_spec(write(tmp_path, bad, "bad.yaml"))


def test_ctrl_c_inside_an_imported_extension_is_an_interrupt_not_a_spec_error(tmp_path):
    """A C extension (TensorFlow's) whose initialisation Ctrl-C cuts short raises
    ``ImportError("initialization failed")`` from the ``KeyboardInterrupt``: the command must
    stop as interrupted, not blame the spec's ``imports``. A plain import error still does."""
    (tmp_path / "cut_short.py").write_text(
        "try:\n    raise KeyboardInterrupt\nexcept KeyboardInterrupt as e:\n"
        "    raise ImportError('initialization failed') from e\n"
    )
    (tmp_path / "broken.py").write_text("raise ImportError('initialization failed')\n")
    with pytest.raises(KeyboardInterrupt):
        load_spec(write(tmp_path, GOOD.replace("student:\n", "imports: [cut_short]\nstudent:\n")))
    with pytest.raises(SpecError, match="imports.0: cannot import 'broken': initialization failed"):
        load_spec(write(tmp_path, GOOD.replace("student:\n", "imports: [broken]\nstudent:\n"), "b.yaml"))


TEACHER = "teacher: {checkpoint: x}\n"

# (spec text, expected exact message with {path} for the file)
BAD_SPECS = [
    # 1 unknown top-level key with a hint
    (
        GOOD + "trian:\n  steps: 3\n",
        '{path}:15: trian: unknown key "trian"; did you mean "train"? Valid keys: data, decode, distill, evaluate, '
        "export, imports, name, report, run_dir, stages, student, sweep, task, teacher, train, variants, version",
    ),
    # 2 unknown nested key
    (
        GOOD.replace("  seed: 3", "  sead: 3"),
        '{path}:14: train.sead: unknown key "sead"; did you mean "seed"? Valid keys: accumulate, adam_beta_1, '
        "adam_beta_2, adam_epsilon, average_last, checkpoint_every, clip_norm, deterministic, early_stop, "
        "init_from, jit_compile, keep_best, keep_last, label_smoothing, learning_rate, log_every, precision, "
        "preemption_grace_s, schedule, seed, seeds, steps, strategy, valid_metric_examples, warmup_steps",
    ),
    # 3 type error on a student field (the student's own schema)
    (
        GOOD.replace("encoder_layers: 2", "encoder_layers: six"),
        '{path}:10: student.encoder_layers: expected an integer, got "six"',
    ),
    # 4 positive integer
    (GOOD.replace("steps: 10", "steps: -5"), "{path}:13: train.steps: expected a number > 0, got -5"),
    # 5 unknown student kind with a hint and the choices
    (
        GOOD.replace("kind: transformer", "kind: transfomer"),
        '{path}:9: student.kind: unknown student "transfomer"; did you mean "transformer"? Choices: {students}',
    ),
    # 6 literal choice
    (
        GOOD + "decode:\n  algorithm: bean\n",
        '{path}:16: decode.algorithm: unknown decoder "bean"; did you mean "beam"? Choices: beam, greedy, mask_predict',
    ),
    # 7 missing required key
    (GOOD.replace("  src_lang: de\n", ""), "{path}:3: data.src_lang: missing required key"),
    # 8 missing environment variable without default
    (
        GOOD.replace("${DATA_ROOT:-/data}", "${TFKD_TEST_UNSET_VAR}"),
        "{path}:4: data.dir: environment variable TFKD_TEST_UNSET_VAR is not set and ${{TFKD_TEST_UNSET_VAR}} has "
        "no default (write ${{TFKD_TEST_UNSET_VAR:-value}} to give one)",
    ),
    # 9 bad boolean
    (GOOD + "evaluate:\n  lowercase: maybe\n", '{path}:16: evaluate.lowercase: expected true or false, got "maybe"'),
    # 10 probability bound
    (
        GOOD.replace("  seed: 3", "  seed: 3\n  label_smoothing: 1.5"),
        "{path}:15: train.label_smoothing: expected a number < 1, got 1.5",
    ),
    # 11 wrong version
    (GOOD.replace("version: 1", "version: 2"), "{path}:1: version: expected one of 1, got 2"),
    # 12 a section that is not a mapping
    (
        GOOD.replace("train:\n  steps: 10\n  seed: 3\n", "train: fast\n"),
        '{path}:12: train: expected a mapping, got "fast"',
    ),
    # 13 invalid YAML
    (
        GOOD.replace("  hidden_dim: 32", "  hidden_dim: [32"),
        "{path}:12: invalid YAML: expected ',' or ']', but got ':'",
    ),
    # 14 unknown stage
    (
        GOOD + "stages: [vocab, trian]\n",
        '{path}:15: stages.1: unknown stage "trian" for task translation and method supervised; did you mean '
        '"train"? Choices: vocab, train, evaluate, export',
    ),
    # 15 text source without a directory
    (
        GOOD.replace("  dir: ${DATA_ROOT:-/data}/multi30k\n", ""),
        '{path}:3: data: source "text" needs "dir" (a folder with {{split}}.{{lang}} files)',
    ),
    # 16 unknown encoder layer
    (
        GOOD.replace("  hidden_dim: 32", "  hidden_dim: 32\n  encoder_layer: {kind: lstm}"),
        '{path}:12: student.encoder_layer.kind: unknown encoder layer "lstm"; Choices: {encoders}',
    ),
    # 17 unknown strategy
    (
        GOOD.replace("  seed: 3", "  seed: 3\n  strategy: mirored"),
        '{path}:15: train.strategy: expected one of auto, one_device, mirrored, multi_worker, tpu, got "mirored"; '
        'did you mean "mirrored"?',
    ),
    # 18 bad name
    (
        GOOD.replace("name: tiny", "name: my run"),
        "{path}:2: name: expected letters, digits, '_', '.' or '-', got \"my run\"",
    ),
    # 18b a name that is run_dir itself or the folder above it
    (
        GOOD.replace("name: tiny", "name: .."),
        "{path}:2: name: '..' is not a folder of its own inside run_dir; name the run",
    ),
    (
        GOOD.replace("name: tiny", "name: ."),
        "{path}:2: name: '.' is not a folder of its own inside run_dir; name the run",
    ),
    # 18c seeds outside NumPy's range (0 to 2**32 - 1)
    (
        GOOD.replace("  seed: 3", "  seed: -1"),
        "{path}:14: train.seed: expected a number >= 0, got -1",
    ),
    (
        GOOD.replace("  seed: 3", "  seeds: [3, 4294967296]"),
        "{path}:14: train.seeds.1: expected a number < 4294967296, got 4294967296",
    ),
    # 19 an import that does not exist
    (
        GOOD + "imports: [no_such_module_xyz]\n",
        "{path}:15: imports.0: cannot import 'no_such_module_xyz': No module named 'no_such_module_xyz'",
    ),
    # 21 distillation without a teacher
    (
        GOOD + "distill: {method: soft_target, alpha: 0.5}\n",
        "{path}:15: distill.method: soft_target needs a teacher section (teacher.checkpoint)",
    ),
    # 22 a method's section with a bad nested value
    (
        GOOD + "teacher:\n  checkpoint: x\ndistill:\n  method: soft_target\n  cache: {top_k: 0}\n",
        "{path}:19: distill.cache.top_k: expected a number > 0, got 0",
    ),
    # 20 dropout out of range in the student schema
    (
        GOOD.replace("  hidden_dim: 32", "  hidden_dim: 32\n  dropout: 2"),
        "{path}:12: student.dropout: expected a number < 1, got 2",
    ),
    # 23 a vocabulary threshold on a learned vocabulary
    (
        GOOD.replace("  batch_tokens: 1024", "  batch_tokens: 1024\n  target_tokenizer: {kind: learned, min_count: 2}"),
        '{path}:8: data.target_tokenizer: min_count applies to kind "teacher" only (a learned vocabulary has '
        "vocab_size; a pretrained one keeps its ids)",
    ),
    # 24 an empty distill section
    (
        GOOD + "distill:\n",
        "{path}:15: distill: empty section: give method: NAME, or remove distill for training on the references alone",
    ),
    # 25 an unknown method
    (
        GOOD + "distill: {method: soft_targets}\n",
        '{path}:15: distill.method: unknown method "soft_targets"; did you mean "soft_target"? Choices: {methods}',
    ),
    # 26 an unknown task
    (
        GOOD + "task: translate\n",
        '{path}:15: task: unknown task "translate"; did you mean "translation"? Choices: {tasks}',
    ),
    # 27 a loss weight for a term the method does not have
    (
        GOOD + TEACHER + "distill:\n  method: soft_target\n  loss_weights: {soft: 0.5, kd: 0.5}\n",
        '{path}:18: distill.loss_weights.kd: unknown loss term "kd" of method soft_target; Terms: soft, xe',
    ),
    # 28 the method's own key and explicit weights together
    (
        GOOD + TEACHER + "distill:\n  method: soft_target\n  alpha: 0.3\n  loss_weights: {soft: 0.5, xe: 0.5}\n",
        "{path}:16: distill: give alpha or loss_weights, not both (alpha sets {{soft: alpha, xe: 1 - alpha}})",
    ),
    # 29 a method key the method does not have
    (
        GOOD + TEACHER + "distill:\n  method: soft_target\n  alhpa: 0.3\n",
        '{path}:18: distill.alhpa: unknown key "alhpa"; did you mean "alpha"? Valid keys: alpha, beta, cache, '
        "divergence, finetune, loss_weights, method, skew, tail, targets, targets_from, temperature_schedule",
    ),
    # 30 init_from a stage that does not exist
    (
        GOOD.replace("  seed: 3", "  seed: 3\n  init_from: pretrain"),
        '{path}:15: train.init_from: unknown stage "pretrain"; Choices: vocab, train, evaluate, export',
    ),
]


@pytest.mark.parametrize("text,expected", BAD_SPECS, ids=[str(i + 1) for i in range(len(BAD_SPECS))])
def test_bad_spec_errors_are_one_exact_line(tmp_path, text, expected, monkeypatch):
    monkeypatch.delenv("TFKD_TEST_UNSET_VAR", raising=False)
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    message = str(e.value)
    assert "\n" not in message
    names = {
        kind + "s": ", ".join(tfkd.registry.names(kind))  # other tests register more
        for kind in ("encoder_layer", "method", "task", "student")
    }
    assert message == expected.format(path=path, encoders=names["encoder_layers"], **names)


def test_every_mistake_is_a_line_in_the_order_of_the_file_then_the_flags(tmp_path):
    """Mistakes at the top level, in the task's and method's sections and in the student's
    settings all come at once, one line each: the file's by line, then the flags' as given."""
    text = GOOD.replace("steps: 10", "steps: -5").replace("hidden_dim: 32", "hidden_dim: x")
    path = write(tmp_path, text.replace("  batch_tokens: 1024", "  batch_tokens: 1024\n  max_tokns: 3"))
    flags = ["decode.beam_size=0", "student.num_heads=y", "train.seed=-2"]
    with pytest.raises(SpecError) as e:
        load_spec(path, flags)
    assert str(e.value).splitlines() == [
        f'{path}:8: data.max_tokns: unknown key "max_tokns"; did you mean "max_tokens"? Valid keys: '
        + str(e.value).split("Valid keys: ")[1].split("\n")[0],
        f'{path}:12: student.hidden_dim: expected an integer, got "x"',
        f"{path}:14: train.steps: expected a number > 0, got -5",
        "--set decode.beam_size=0: decode.beam_size: expected a number > 0, got 0",
        '--set student.num_heads=y: student.num_heads: expected an integer, got "y"',
        "--set train.seed=-2: train.seed: expected a number >= 0, got -2",
    ]


def test_validate_cli_exit_code_and_one_line(tmp_path, capsys):
    from tfkd.cli import main

    good = write(tmp_path, GOOD)
    bad = write(tmp_path, GOOD.replace("steps: 10", "steps: ten"), "bad.yaml")
    assert main(["validate", good]) == 0
    assert main(["validate", good, bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'{bad}:13: train.steps: expected an integer, got "ten"']


def test_a_spec_that_is_not_utf8_is_one_line_naming_its_line(tmp_path, capsys):
    from tfkd.cli import main

    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.replace("name: tiny", "name: tiny\n# caf\u00e9").encode("latin-1"))
    at = len("version: 1\nname: tiny\n# caf")  # the byte offset of the Latin-1 e-acute
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{path}:3: not valid UTF-8 (invalid continuation byte at byte {at}); save the spec as UTF-8"
    ]


def test_repo_specs_validate():
    specs = [os.path.join(REPO, "specs", f) for f in os.listdir(os.path.join(REPO, "specs")) if f.endswith(".yaml")]
    assert specs
    for path in specs:
        assert isinstance(load_spec(path), tfkd.spec.Spec)


# ----------------------------------------------------------------------------- variants

MASK_TASK = """\
version: 1
name: mt
data:
  dir: /data/multi30k
  src_lang: en
  tgt_lang: de
  source_tokenizer: {kind: teacher}
teacher: {checkpoint: /teacher}
distill:
  method: mask_task
  gate: layer
variants:
  ungated: {distill.gate: none}
  hidden: {distill: {method: hidden_state, alpha: 0.25}}
  small: {student.hidden_dim: 64, train.steps: 5}
student: {kind: transformer, hidden_dim: 32}
"""


def test_variants_are_whole_specs_with_their_settings_changed(tmp_path):
    from tfkd.plan import plan_run

    spec = load_spec(write(tmp_path, MASK_TASK))
    assert spec.variant("ungated").distill.gate == "none" and spec.distill.gate == "layer"
    assert spec.variant("ungated").distill.teacher_mlm == spec.distill.teacher_mlm
    hidden = spec.variant("hidden")
    assert hidden.method == "hidden_state" and hidden.distill.alpha == 0.25 and hidden.distill.gate == "none"
    small = spec.variant("small")
    assert small.student_config().hidden_dim == 64 and small.train.steps == 5 and small.data == spec.data
    assert plan_run(spec).names == [
        "vocab",
        "teacher_mlm",
        "baseline",
        "baseline_evaluate",
        "ungated",
        "ungated_evaluate",
        "hidden",
        "hidden_evaluate",
        "small",
        "small_evaluate",
        "train",
        "evaluate",
        "export",
    ]


@pytest.mark.parametrize(
    "variant, line, message",
    [
        ("  bad: {distill.gaet: none}", 15, 'variants.bad: distill.gaet: unknown key "gaet"; did you mean "gate"?'),
        ("  bad: {distill.alpha: -1}", 15, "variants.bad: distill.alpha: expected a number >= 0, got -1"),
        ("  bad: {data.src_lang: de}", 15, "variants.bad.data.src_lang: expected a key under distill, student, train"),
        ("  train: {distill.gate: none}", 15, "variants.train: expected a new stage name"),
        ("  bad: {}", 15, "variants.bad: expected settings to change"),
        (
            "  bad: {distill: {method: soft_target}}",
            15,
            'variants.bad: data.target_tokenizer.kind: soft_target needs "teacher"',
        ),
    ],
)
def test_variant_errors_name_the_variant_and_its_line(tmp_path, variant, line, message):
    text = MASK_TASK.replace("  small: {student.hidden_dim: 64, train.steps: 5}", variant)
    with pytest.raises(SpecError) as e:
        load_spec(write(tmp_path, text))
    assert str(e.value).startswith(f"{tmp_path / 'spec.yaml'}:{line}: ")
    assert message in str(e.value), str(e.value)


def test_a_variant_cannot_need_stages_the_run_does_not_have(tmp_path):
    text = MASK_TASK.replace("  method: mask_task\n  gate: layer", "  method: hidden_state")
    text = text.replace(
        "  ungated: {distill.gate: none}\n  hidden: {distill: {method: hidden_state, alpha: 0.25}}\n",
        "  masked: {distill: {method: mask_task}}\n",
    )
    with pytest.raises(SpecError) as e:
        load_spec(write(tmp_path, text))
    assert str(e.value) == (
        f"{tmp_path / 'spec.yaml'}:12: variants.masked: method mask_task needs stage(s) "
        "teacher_mlm, which method hidden_state does not run; make it the run's method instead"
    )


def test_the_mask_task_cache_is_a_stage_only_with_teacher_cache(tmp_path):
    from tfkd.plan import plan_run

    path = write(tmp_path, MASK_TASK)
    assert "teacher_mlm_cache" not in plan_run(load_spec(path)).names
    cached = load_spec(path, ["distill.teacher=cache", "distill.cache.top_k=4"])
    assert (
        plan_run(cached).names[:3] == ["vocab", "teacher_mlm", "teacher_mlm_cache"] and cached.distill.cache.top_k == 4
    )
    with pytest.raises(SpecError, match="distill: cache applies to teacher: cache only"):
        load_spec(path, ["distill.cache.top_k=4"])
