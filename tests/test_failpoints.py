"""TFKD_KILL_AT: which pass through a failpoint sends the signal."""

import signal

import pytest

from tfkd import failpoints


@pytest.fixture
def sent(monkeypatch):
    """The signals the failpoints send (instead of sending them), and fresh pass counts."""
    signals = []
    monkeypatch.setattr(failpoints.os, "kill", lambda pid, sig: signals.append(sig))
    monkeypatch.setattr(failpoints, "_passes", {})
    monkeypatch.setattr(failpoints, "_stage", [])
    return signals


RUN = [
    "stage-start:teacher",
    "weights-written",
    "weights-written",
    "stage-start:train",
    "weights-written",
    "weights-written",
    "stage-finishing:train",
]


def kills(monkeypatch, sent, kill_at):
    monkeypatch.setenv("TFKD_KILL_AT", kill_at)
    at = []
    for i, name in enumerate(RUN):
        before = len(sent)
        failpoints.failpoint(name)
        if len(sent) > before:
            at.append((i, sent[-1]))
    return at


def test_the_nth_pass_anywhere(monkeypatch, sent):
    assert kills(monkeypatch, sent, "weights-written:3") == [(4, signal.SIGKILL)]


def test_the_nth_pass_inside_a_stage(monkeypatch, sent):
    assert kills(monkeypatch, sent, "weights-written:2/train@SIGTERM") == [(5, signal.SIGTERM)]


def test_a_stage_that_never_runs_kills_nothing(monkeypatch, sent):
    assert kills(monkeypatch, sent, "weights-written:1/evaluate") == []


def test_stage_points_and_no_variable(monkeypatch, sent):
    assert kills(monkeypatch, sent, "stage-finishing:train@SIGINT") == [(6, signal.SIGINT)]
    monkeypatch.delenv("TFKD_KILL_AT")
    for name in RUN:
        failpoints.failpoint(name)
    assert sent == [signal.SIGINT]
