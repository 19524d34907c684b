"""tools/prepare_iwslt14.py on a tiny archive in the official IWSLT14 de-en.tgz format."""

import io
import os
import subprocess
import sys
import tarfile

from helpers import REPO

HEADER = {
    "de": [
        "<url>http://www.ted.com/talks/x.html</url>",
        "<keywords>talks</keywords>",
        "<speaker>Jemand</speaker>",
        "<talkid>1</talkid>",
        "<title>Ein Titel</title>",
        "<description>TED Talk Beschreibung</description>",
    ],
    "en": [
        "<url>http://www.ted.com/talks/x.html</url>",
        "<keywords>talks</keywords>",
        "<speaker>Someone</speaker>",
        "<talkid>1</talkid>",
        "<title>A title</title>",
        "<description>TED Talk description</description>",
    ],
}


def xml(lang, sentences):
    body = "\n".join(f'<seg id="{i}"> {s} </seg>' for i, s in enumerate(sentences, 1))
    return f'<mteval>\n<srcset setid="x" srclang="{lang}">\n<doc docid="1">\n{body}\n</doc>\n</srcset>\n</mteval>\n'


def build_archive(path, n_train=50):
    files = {}
    de = [f"Das ist Satz Nummer {i}, sagte Anna's Hund." for i in range(n_train)]
    en = [f"This is sentence number {i}, said Anna's dog." for i in range(n_train)]
    de[10], en[10] = "Ja", "Yes , this is far too long for that short German side of the pair"  # ratio > 1.5
    files["de-en/train.tags.de-en.de"] = "\n".join(HEADER["de"] + de) + "\n"
    files["de-en/train.tags.de-en.en"] = "\n".join(HEADER["en"] + en) + "\n"
    for name in (
        "IWSLT14.TED.dev2010",
        "IWSLT14.TEDX.dev2012",
        "IWSLT14.TED.tst2010",
        "IWSLT14.TED.tst2011",
        "IWSLT14.TED.tst2012",
    ):
        files[f"de-en/{name}.de-en.de.xml"] = xml("de", [f"{name} Test Eins.", "Zwei\u2019s Test."])
        files[f"de-en/{name}.de-en.en.xml"] = xml("en", [f"{name} test one.", "Two\u2019s test."])
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_prepare_iwslt14_builds_the_fairseq_split(tmp_path):
    build_archive(tmp_path / "de-en.tgz")
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "prepare_iwslt14.py"),
            str(tmp_path / "de-en.tgz"),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    read = lambda name: (tmp_path / "out" / name).read_text().splitlines()  # noqa: E731
    # 49 pairs survive cleaning; every 23rd goes to valid
    assert len(read("train.de")) == len(read("train.en")) == 47
    assert len(read("valid.de")) == len(read("valid.en")) == 2
    assert read("valid.en")[0] == "this is sentence number 23 , said anna &apos;s dog ."
    assert read("train.de")[0] == "das ist satz nummer 0 , sagte anna &apos; s hund ."  # Moses de splits apostrophes
    assert not any("<" in line or "talk" in line for line in read("train.en"))
    assert len(read("test.de")) == len(read("test.en")) == 10
    assert read("test.en")[:2] == ["iwslt14.ted.dev2010 test one .", "two &apos;s test ."]


def test_prepare_iwslt14_missing_archive_is_one_line(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "prepare_iwslt14.py"),
            str(tmp_path / "nope.tgz"),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert out.stderr.strip() == f"prepare_iwslt14: {tmp_path}/nope.tgz: no such file"
