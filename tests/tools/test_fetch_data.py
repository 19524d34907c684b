"""tools/fetch_data.py against a local file server (http.server) laid out as the public sources
(``--mirror``): the real corpora (their recorded sums), WikiText-2's train file from a zip in
the CSV round-trip form, a tiny IWSLT14 archive, a copy that differs, and no network."""

import functools
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
import zipfile

import pytest
from helpers import REPO
from test_prepare_iwslt14 import build_archive

TOOL = os.path.join(REPO, "tools", "fetch_data.py")
sys.path.insert(0, os.path.join(REPO, "tools"))

import fetch_data  # noqa: E402

REAL = ["multi30k_deen", "sst2", "ptb", "wikitext2"]


def fetch(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=600)


def mirror_path(root, url):
    parts = urllib.parse.urlsplit(url)
    path = os.path.join(root, parts.netloc, parts.path.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def as_csv_round_trip(text):
    """WikiText text in the zip's form: one chunk wrapped in quotes, inner quotes doubled (what
    :func:`fetch_data.undo_csv_round_trip` undoes)."""
    return ('"' + text.replace('"', '""') + '"\n').encode("utf-8")


@pytest.fixture()
def server(tmp_path):
    """An http.server on 127.0.0.1 serving ``tmp_path/mirror``; yields (root, url, requests)."""
    root = tmp_path / "mirror"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def serve_real_corpora(root, data_dir):
    """Put the shared corpora where their public sources have them."""
    for name in REAL:
        for file, (how, _) in fetch_data.CORPORA[name].items():
            local = os.path.join(data_dir, name, file)
            if "member" in how:
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                    with open(local, encoding="utf-8") as f:
                        archive.writestr(how["member"], as_csv_round_trip(f.read()))
                with open(mirror_path(root, how["url"]), "wb") as f:
                    f.write(buffer.getvalue())
            else:
                shutil.copyfile(local, mirror_path(root, how["url"]))


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_the_recorded_sums_are_those_of_the_shared_corpora(data_dir):
    import json

    for name in REAL:
        with open(os.path.join(data_dir, name, "MANIFEST.json")) as f:
            manifest = json.load(f)
        assert {file: sum_ for file, (_, sum_) in fetch_data.CORPORA[name].items()} == {
            file: entry["sha256"] for file, entry in manifest["files"].items()
        }, name


def test_fetches_every_corpus_checks_its_sums_and_fetches_nothing_twice(server, tmp_path, data_dir):
    root, url, requests = server
    serve_real_corpora(root, data_dir)
    out = fetch(*REAL, str(tmp_path / "data"), "--mirror", url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == f"export TFKD_DATA_DIR={tmp_path / 'data'}"
    for name in REAL:
        for file in fetch_data.CORPORA[name]:
            assert sha256_of(tmp_path / "data" / name / file) == sha256_of(os.path.join(data_dir, name, file))
        assert (tmp_path / "data" / name / "MANIFEST.json").exists()
    # one request per file (WikiText-2's train file is the zip's one member); then none
    assert len(requests) == sum(len(fetch_data.CORPORA[n]) for n in REAL)
    requests.clear()
    again = fetch("multi30k_deen", str(tmp_path / "data"), "--mirror", url)
    assert again.returncode == 0 and requests == [], again.stderr
    assert "multi30k_deen: complete in" in again.stdout


def test_a_copy_that_differs_is_refused_and_not_written(server, tmp_path, data_dir):
    root, url, _ = server
    serve_real_corpora(root, data_dir)
    how, expected = fetch_data.CORPORA["multi30k_deen"]["test.en"]
    with open(mirror_path(root, how["url"]), "a", encoding="utf-8") as f:
        f.write("one line more\n")
    out = fetch("multi30k_deen", str(tmp_path / "data"), "--mirror", url)
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1, out.stderr
    target = tmp_path / "data" / "multi30k_deen" / "test.en"
    assert out.stderr.startswith(f"fetch_data: {url}/raw.githubusercontent.com/OpenNMT/OpenNMT-py/")
    assert f"for {target}, expected {expected}; this copy differs" in out.stderr
    assert not target.exists() and not (tmp_path / "data" / "multi30k_deen" / "MANIFEST.json").exists()
    # a file put there by hand is checked too
    target.write_text("not multi30k\n", encoding="utf-8")
    out = fetch("multi30k_deen", str(tmp_path / "data"), "--mirror", url)
    assert out.returncode == 1 and out.stderr.strip().endswith(f"expected {expected}; remove it to download it again")


def test_without_network_says_what_to_download_and_where(tmp_path):
    out = fetch("sst2", str(tmp_path / "data"), "--mirror", "http://127.0.0.1:9")
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1, out.stderr
    how, _ = fetch_data.CORPORA["sst2"]["train.tsv"]
    assert out.stderr.startswith("fetch_data: http://127.0.0.1:9/raw.githubusercontent.com/tacchinotacchi/")
    assert out.stderr.strip().endswith(
        f"download {how['url']} by hand and put it at {tmp_path / 'data' / 'sst2' / 'train.tsv'}"
    )
    out = fetch("iwslt14_deen", str(tmp_path / "data"), "--mirror", "http://127.0.0.1:9")
    assert out.returncode == 1 and out.stderr.strip().endswith(
        f"run: python tools/fetch_data.py iwslt14_deen {tmp_path / 'data'} --archive de-en.tgz"
    )
    out = fetch("wikitext3", str(tmp_path / "data"))
    assert out.returncode == 2 and "unknown corpus 'wikitext3'" in out.stderr


def test_a_tiny_iwslt14_archive_is_prepared(server, tmp_path):
    root, url, _ = server
    build_archive(mirror_path(root, fetch_data.IWSLT14))
    out = fetch("iwslt14_deen", str(tmp_path / "data"), "--mirror", url)
    assert out.returncode == 0, out.stderr
    expected = tmp_path / "direct"
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "prepare_iwslt14.py"),
            mirror_path(root, fetch_data.IWSLT14),
            str(expected),
        ],
        check=True,
        capture_output=True,
    )
    for file in fetch_data.IWSLT14_FILES:
        assert (tmp_path / "data" / "iwslt14_deen" / file).read_bytes() == (expected / file).read_bytes(), file
    assert not (tmp_path / "data" / "iwslt14_deen" / "de-en.tgz").exists()
    assert "iwslt14_deen: valid:" in out.stdout
