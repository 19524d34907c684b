"""``specs/lightpaff_gpt2_wikitext2_cpu.yaml`` shrunk by ``--set`` (a few hundred lines of
WikiText-2 and PTB, tiny models) through every stage: the BPE, the teacher's pre-training and
fine-tuning, distilled and plain causal-LM pre-training, Table 3's baseline and gpt2_small,
LightPAFF, the table, the export served without tfkd, and ``tfkd generate``."""

import json
import os

import numpy as np
import pytest
from helpers import REPO, serve_only, tfkd

SHRINK = [
    "run_dir={run_dir}",
    "report.latency=false",  # the report is built; timing students is tests/report/'s
    "data.train_limit=300",
    "data.valid_limit=60",
    "data.test_limit=60",
    "data.block_size=32",
    "data.batch_size=8",
    "data.tokenizer.vocab_size=600",
    "distill.teacher_pretrain.text_limit=300",
    "distill.teacher_pretrain.valid_limit=40",
    "distill.teacher_pretrain.num_layers=1",
    "distill.teacher_pretrain.hidden_dim=32",
    "distill.teacher_pretrain.num_heads=2",
    "distill.teacher_pretrain.intermediate_dim=64",
    "distill.teacher_pretrain.max_sequence_length=64",
    "distill.teacher_pretrain.max_length=32",
    "distill.teacher_pretrain.batch_size=8",
    "distill.teacher_pretrain.steps=4",
    "distill.teacher_pretrain.log_every=2",
    "distill.teacher_finetune.steps=4",
    "distill.teacher_finetune.log_every=2",
    "distill.pretrain.text_limit=300",
    "distill.pretrain.valid_limit=40",
    "distill.pretrain.max_length=32",
    "distill.pretrain.batch_size=8",
    "distill.pretrain.steps=4",
    "distill.pretrain.log_every=2",
    "train.steps=4",
    "train.checkpoint_every=2",
    "train.log_every=2",
    "train.warmup_steps=1",
    "student.num_layers=1",
    "student.hidden_dim=16",
    "student.intermediate_dim=32",
    "student.max_sequence_length=64",
    "decode.max_new_tokens=8",
]
PROMPTS = ["The game was released in", "", "Robert Boulter is an English"]


@pytest.mark.slow
def test_the_gpt2_lightpaff_spec_runs_every_stage_exports_and_generates(tmp_path):
    spec = os.path.join(REPO, "specs", "lightpaff_gpt2_wikitext2_cpu.yaml")
    flags = [a for s in SHRINK for a in ("--set", s.format(run_dir=tmp_path / "runs"))]
    out = tfkd(
        "run",
        spec,
        *flags,
        "--stages",
        "vocab,teacher_pretrain,teacher_finetune,teacher_evaluate,pretrain_kd,pretrain_mle,baseline,baseline_evaluate,"
        "gpt2_small,gpt2_small_evaluate,train,evaluate,export",
    )
    assert out.returncode == 0, out.stderr[-4000:]
    run = tmp_path / "runs" / "lightpaff_gpt2_wikitext2_cpu"
    results = {
        d.name: json.load(open(d / "stage.json"))["results"] for d in run.iterdir() if (d / "stage.json").exists()
    }
    assert results["vocab"]["vocabulary_size"] == 600
    # the teacher: pre-trained by tfkd, fine-tuned and scored on valid, then on test by teacher_evaluate
    assert results["teacher_pretrain"]["parameters"] == results["teacher_finetune"]["parameters"]
    for stage, split in (("teacher_finetune", "valid"), ("teacher_evaluate", "test")):
        scored = results[stage][split]
        assert scored["metric"] == "perplexity" and scored["score"] == scored["word_perplexity"] > 1
    assert "test" not in results["teacher_finetune"]
    # pre-training: with the teacher online (lambda 0.4: both terms) and without
    assert results["pretrain_kd"]["lambda"] == 0.4 and results["pretrain_kd"]["kd"] > 0
    assert results["pretrain_mle"]["lambda"] == 0.0 and results["pretrain_mle"]["val_token_perplexity"] > 1
    start = {name: results[name]["initialised_from"] for name in ("baseline", "gpt2_small", "train")}
    assert start == {"baseline": None, "gpt2_small": "stage pretrain_mle", "train": "stage pretrain_kd"}
    assert results["train"]["loss_weights"] == {"xe": 0.5, "kd": 0.5} and results["train"]["kd"] > 0
    assert results["gpt2_small"]["loss_weights"] == {"xe": 1.0}
    assert results["baseline"]["trainable_parameters"] == results["train"]["trainable_parameters"]
    # every student scored on the same words
    words = {results[s]["test"]["words"] for s in ("baseline_evaluate", "gpt2_small_evaluate", "evaluate")}
    assert len(words) == 1
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 1 + 3 and table[1].startswith("| teacher (GPT-2 pre-trained by tfkd")
    # the export: text in, log-probabilities and a continuation out, served by tensorflow alone
    served = serve_only(run / "export" / "lightpaff_gpt2_wikitext2_cpu" / "1", PROMPTS, tmp_path, input_name="text")
    assert served["loaded"] == [] and len(served["continuation"]) == len(PROMPTS)
    assert served["lengths"][1] == 0 and served["total_log_prob"][1] == 0
    # ... the run's log-probabilities
    import tensorflow as tf

    from tfkd.pipeline import open_run
    from tfkd.stages import load_student

    _, _, context = open_run(str(run))
    in_process = context.task.text_lm(context, load_student(context)).score(tf.constant(PROMPTS))
    np.testing.assert_allclose(served["log_probs"], in_process["log_probs"].numpy(), atol=1e-5)
    # tfkd generate: with the export and with the run directory, the same greedy continuations
    from_export = tfkd(
        "generate", str(run / "export" / "lightpaff_gpt2_wikitext2_cpu"), *[a for p in PROMPTS for a in ("--prompt", p)]
    )
    assert from_export.returncode == 0, from_export.stderr[-2000:]
    assert from_export.stdout.split("\n")[: len(PROMPTS)] == served["continuation"]
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    from_run = tfkd("generate", str(run), "-i", str(tmp_path / "prompts.txt"))
    assert from_run.returncode == 0 and from_run.stdout == from_export.stdout
    # sampling settings change a run's continuations; generate refuses a model of another task
    sampled = tfkd(
        "generate",
        str(run),
        "--prompt",
        PROMPTS[0],
        "--set",
        "decode.sampler=top_k",
        "--set",
        "decode.seed=7",
        "--set",
        "decode.temperature=5.0",
    )
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    bad = tfkd("generate", str(run), "--prompt", "x", "--set", "decode.sampler=beam")
    assert bad.returncode == 2 and "decode.sampler=beam" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
