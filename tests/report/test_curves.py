"""``tfkd.report.curves``: the scalars a training stage logs read back from its TensorBoard
events (as :class:`tfkd.training.callbacks.TrainingMonitor` writes them) and from ``log.txt``
lines, which is the validation metric, and the figures drawn from them."""

import os

from report_runs import _log_lines

from tfkd.report import curves


def test_events_written_by_tf_summary_are_read_back(tmp_path):
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path / "tensorboard"))
    with writer.as_default():
        for step in (10, 20):
            tf.summary.scalar("train/loss", 5.0 - step / 10, step=step)
            tf.summary.scalar("valid/bleu", step / 2, step=step)
    writer.flush()
    found = curves.read_events(str(tmp_path / "tensorboard"))
    assert found["train/loss"] == [(10, 4.0), (20, 3.0)]
    assert found["valid/bleu"] == [(10, 5.0), (20, 10.0)]
    assert curves.read_events(str(tmp_path / "nothing")) == {}


def test_a_stage_s_log_lines_are_its_curves(tmp_path):
    log = tmp_path / "log.txt"
    other = [line.replace("baseline", "train").replace("loss 7", "loss 9") for line in _log_lines("baseline")]
    log.write_text("\n".join(["--- 2026-11-24 tfkd run x.yaml", *_log_lines("baseline"), *other]) + "\n")
    found = curves.read_log(str(log), "baseline")
    assert found["train/loss"] == [(10, 7.0), (20, 6.0), (30, 5.0), (40, 4.0)]
    assert found["train/learning_rate"][0] == (10, 1e-4)
    assert found["train/tokens_per_second"][-1] == (40, 940.0)
    assert found["train/steps_per_second"][0] == (10, 1.2)
    assert found["valid/bleu"] == [(10, 2.5), (20, 5.0), (30, 7.5), (40, 10.0)]
    assert found["train/grad_norm"][0] == (10, 1.5)
    assert curves.read_log(str(log), "train")["train/loss"][0] == (10, 9.0)
    assert curves.read_log(str(log), "evaluate") == {} and curves.read_log(str(tmp_path / "none"), "x") == {}


def test_a_resumed_stage_s_later_lines_replace_earlier_ones(tmp_path):
    first = _log_lines("train", steps=20)[:-1]  # killed after step 20
    again = [line.replace("loss 6.000", "loss 5.500") for line in _log_lines("train")]  # resumed from step 0
    (tmp_path / "log.txt").write_text("\n".join(first + again) + "\n")
    found = curves.read_log(str(tmp_path / "log.txt"), "train")
    assert dict(found["train/loss"])[20] == 5.5 and len(found["train/loss"]) == 4


def test_the_validation_metric_is_not_a_loss():
    logged = {f"train/{n}": [(1, 1.0)] for n in ("loss", "xe", "nll", "soft", "accuracy", "learning_rate")}
    logged |= {f"valid/{n}": [(1, 1.0)] for n in ("loss", "xe", "soft", "tokens", "bleu", "accuracy")}
    assert curves.validation_metrics(logged) == ["valid/accuracy", "valid/bleu"]


def test_the_figures_are_pngs(tmp_path):
    found = {
        "train/loss": [(1, 3.0), (2, 2.0)],
        "train/learning_rate": [(1, 1e-4), (2, 2e-4)],
        "train/tokens_per_second": [(1, 0.0), (2, 0.0)],  # no token counts: steps/s instead
        "train/steps_per_second": [(1, 1.0), (2, 1.1)],
    }
    name = curves.stage_figure(found, "a stage", str(tmp_path), "curves-x")
    assert name == "curves-x.png" and os.path.getsize(tmp_path / name) > 1000
    assert curves.comparison_figure([("one", found, {})], str(tmp_path)) is None  # one student: nothing to compare
    pair = [("one", found, {"color": "C0"}), ("two", found, {"color": "C1", "linestyle": ":"})]
    assert curves.comparison_figure(pair, str(tmp_path)) == "curves-students.png"
