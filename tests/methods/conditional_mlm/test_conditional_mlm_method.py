"""``distill.method: conditional_mlm``: a CMLM Transformer trained from the references by the conditional
masked LM and length losses and decoded by Mask-Predict, in a tiny real run (vocabularies,
training, evaluation, ``tfkd translate``); a student that does not decode in parallel is one
line of spec error."""

import json

import pytest
from helpers import tfkd, write_spec

CMLM = (
    "distill={method: conditional_mlm, length_weight: 0.2}",
    "student.kind=cmlm_transformer",
    "student.encoder_layer={kind: transformer_encoder}",
    "student.max_target_length=48",
    "decode={algorithm: mask_predict, length_candidates: 2, iterations: 3}",
    "stages=[vocab, train, evaluate]",
)


def flags(settings):
    return [a for s in settings for a in ("--set", s)]


def test_a_student_that_decodes_left_to_right_is_refused_in_one_line(tmp_path):
    spec = write_spec(tmp_path, "tiny")
    out = tfkd("validate", spec, *flags([s for s in CMLM if not s.startswith("student.")]))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"{spec}:17: student.kind: method conditional_mlm trains a student that decodes in parallel (a "
        "tfkd.models.ParallelDecoding, such as cmlm_transformer); transformer is not"
    ], out.stderr


@pytest.mark.slow
def test_a_cmlm_transformer_trains_evaluates_and_translates_with_mask_predict(tmp_path, data_dir):
    spec = write_spec(tmp_path, "tiny", steps=8, every=4)
    out = tfkd("run", spec, *flags(CMLM), env_extra={"TFKD_DATA_DIR": data_dir})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "train: conditional_mlm student CMLMTransformer via CMLMTrainer" in out.stderr
    assert "translating 30 test sentences (mask_predict, 2 lengths, 3 iterations)" in out.stderr
    run = tmp_path / "runs" / "tiny"
    results = json.loads((run / "train" / "stage.json").read_text())["results"]
    assert results["loss_weights"] == {"cmlm": 1.0, "length": 0.2}
    assert results["cmlm"] > 0 and results["length"] > 0 and results["steps"] == 8
    scores = json.loads((run / "evaluate" / "stage.json").read_text())["results"]
    assert "bleu" in json.dumps(scores).lower()
    hypotheses = (run / "evaluate" / "test.hyp").read_text().splitlines()
    assert len(hypotheses) == 30
    # tfkd translate on the run decodes as its evaluation did
    source = tmp_path / "test.de"
    with open(f"{data_dir}/multi30k_deen/test.de") as f:
        source.write_text("".join(next(f) for _ in range(30)))
    translated = tfkd("translate", str(run), "-i", str(source))
    assert translated.returncode == 0, translated.stderr[-2000:]
    assert translated.stdout.splitlines() == hypotheses
