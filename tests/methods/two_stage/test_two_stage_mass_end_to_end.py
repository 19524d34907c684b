"""``specs/lightpaff_mass_deen_cpu.yaml`` shrunk by ``--set`` (a few hundred Multi30k lines, tiny
models) through every stage: the shared vocabulary, the teacher's MASS pre-training and its
fine-tuning on the pairs, distilled and plain MASS pre-training of the student, Table 5's
baseline and mass_small, LightPAFF, the table, and the export served without tfkd."""

import json
import os

import pytest
from helpers import REPO, serve_only, tfkd

SHRINK = [
    "run_dir={run_dir}",
    "report.latency=false",  # the report is built; timing students is tests/report/'s
    "data.train_limit=300",
    "data.valid_limit=30",
    "data.test_limit=30",
    "data.source_tokenizer.vocab_size=500",
    "data.target_tokenizer.vocab_size=500",
    "distill.teacher_pretrain.text_limit=300",
    "distill.teacher_pretrain.valid_limit=30",
    "distill.teacher_pretrain.num_layers=1",
    "distill.teacher_pretrain.decoder_layers=2",
    "distill.teacher_pretrain.hidden_dim=32",
    "distill.teacher_pretrain.num_heads=2",
    "distill.teacher_pretrain.intermediate_dim=64",
    "distill.teacher_pretrain.batch_size=16",
    "distill.teacher_pretrain.steps=4",
    "distill.teacher_pretrain.log_every=2",
    "distill.teacher_finetune.steps=4",
    "distill.teacher_finetune.log_every=2",
    "distill.pretrain.text_limit=300",
    "distill.pretrain.valid_limit=30",
    "distill.pretrain.batch_size=16",
    "distill.pretrain.steps=4",
    "distill.pretrain.log_every=2",
    "train.steps=4",
    "train.checkpoint_every=2",
    "train.log_every=2",
    "train.warmup_steps=1",
    "student.encoder_layers=1",
    "student.decoder_layers=1",
    "student.hidden_dim=16",
    "student.intermediate_dim=32",
    "student.num_heads=2",
    "decode.beam_size=2",
]
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]


@pytest.mark.slow
def test_the_mass_lightpaff_spec_runs_every_stage_and_exports(tmp_path):
    spec = os.path.join(REPO, "specs", "lightpaff_mass_deen_cpu.yaml")
    flags = [a for s in SHRINK for a in ("--set", s.format(run_dir=tmp_path / "runs"))]
    out = tfkd(
        "run",
        spec,
        *flags,
        "--stages",
        "vocab,teacher_pretrain,teacher_finetune,teacher_evaluate,pretrain_kd,pretrain_mle,baseline,baseline_evaluate,"
        "mass_small,mass_small_evaluate,train,evaluate,export",
    )
    assert out.returncode == 0, out.stderr[-4000:]
    run = tmp_path / "runs" / "lightpaff_mass_deen_cpu"
    results = {
        d.name: json.load(open(d / "stage.json"))["results"] for d in run.iterdir() if (d / "stage.json").exists()
    }
    # one vocabulary for both languages
    assert (run / "vocab" / "source.vocab").read_text() == (run / "vocab" / "target.vocab").read_text()
    # the teacher: pre-trained by MASS on both monolingual sides, fine-tuned and scored on the
    # validation split, then scored on the test split by its own stage
    pretrained = results["teacher_pretrain"]
    assert pretrained["sentences"] == 600 and pretrained["val_token_perplexity"] > 1
    assert pretrained["parameters"] == results["teacher_finetune"]["parameters"]
    assert results["teacher_finetune"]["valid"]["metric"] == "BLEU" and "test" not in results["teacher_finetune"]
    assert results["teacher_evaluate"]["test"]["metric"] == "BLEU"
    # ... of the teacher teacher_finetune wrote (the stage reads no other)
    assert set(json.load(open(run / "teacher_evaluate" / "INPUTS.json"))["upstream"]) == {"vocab", "teacher_finetune"}
    # the student's pre-training: with the teacher online (lambda 0.7: both terms) and without
    assert results["pretrain_kd"]["lambda"] == 0.7 and results["pretrain_kd"]["kd"] > 0
    assert results["pretrain_mle"]["lambda"] == 0.0 and results["pretrain_mle"].get("kd", 0) == 0
    start = {name: results[name]["initialised_from"] for name in ("baseline", "mass_small", "train")}
    assert start == {"baseline": None, "mass_small": "stage pretrain_mle", "train": "stage pretrain_kd"}
    # word-level KD from the fine-tuned teacher in fine-tuning; none for mass_small
    assert results["train"]["loss_weights"] == {"xe": 0.5, "kd": 0.5} and results["train"]["kd"] > 0
    assert results["mass_small"]["loss_weights"] == {"xe": 1.0}
    assert results["baseline"]["trainable_parameters"] == results["train"]["trainable_parameters"]
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 1 + 3 and table[1].startswith("| teacher (Transformer pre-trained by tfkd with MASS")
    # the teacher row's test score is teacher_evaluate's
    cells = [[cell.strip() for cell in line.split("|")] for line in (table[0], table[1])]
    test_bleu = cells[1][cells[0].index("test BLEU")]
    assert test_bleu == f"{results['teacher_evaluate']['test']['score']:.2f}"
    # the export: raw German in, English out, served by tensorflow alone, as the run translates
    served = serve_only(run / "export" / "lightpaff_mass_deen_cpu" / "1", SENTENCES, tmp_path)
    assert served["loaded"] == [] and len(served["translations"]) == len(SENTENCES)
    (tmp_path / "in.de").write_text("\n".join(SENTENCES) + "\n")
    translated = tfkd("translate", str(run), "-i", str(tmp_path / "in.de"))
    assert translated.returncode == 0, translated.stderr[-2000:]
    assert translated.stdout.split("\n")[: len(SENTENCES)] == served["translations"]
