"""Build the fairseq IWSLT14 De-En split from the official archive.

    python tools/prepare_iwslt14.py de-en.tgz OUT_DIR            # a local copy of the archive
    python tools/prepare_iwslt14.py https://.../de-en.tgz OUT_DIR

The archive is IWSLT 2014's ``de-en.tgz`` (``de-en/train.tags.de-en.{de,en}`` and the
``IWSLT14.TED*.xml`` dev/test files). The steps are those of fairseq's
``examples/translation/prepare-iwslt14.sh``, with sacremoses standing in for Moses'
``tokenizer.perl``:

- train: drop the metadata lines (``<url>``, ``<talkid>``, ``<keywords>``, ...), strip
  ``<title>``/``<description>`` tags, Moses-tokenize, keep pairs of 1 to 175 tokens with a
  length ratio of at most 1.5 (``clean-corpus-n.perl``), lowercase; every 23rd pair becomes
  ``valid``, the rest ``train``;
- test: the ``<seg>`` texts of TED.dev2010, TEDX.dev2012, TED.tst2010, tst2011 and tst2012,
  tokenized and lowercased.

Writes ``OUT_DIR/{train,valid,test}.{de,en}`` (no BPE: tfkd's tokenizers split words).
"""

import argparse
import io
import os
import re
import sys
import tarfile
import urllib.request

LANGS = ("de", "en")
TEST_SETS = (
    "IWSLT14.TED.dev2010",
    "IWSLT14.TEDX.dev2012",
    "IWSLT14.TED.tst2010",
    "IWSLT14.TED.tst2011",
    "IWSLT14.TED.tst2012",
)
META = re.compile(r"^\s*<(url|talkid|keywords|speaker|reviewer|translator|title|description)")
SEG = re.compile(r'^\s*<seg id="?\d+"?>\s*(.*?)\s*</seg>\s*$')


def open_archive(source):
    if re.match(r"^(https?|ftp)://", source):
        with urllib.request.urlopen(source) as response:
            return tarfile.open(fileobj=io.BytesIO(response.read()), mode="r:*")
    if not os.path.exists(source):
        sys.exit(f"prepare_iwslt14: {source}: no such file")
    return tarfile.open(source, mode="r:*")


def member_text(archive, suffix):
    for member in archive.getmembers():
        if member.name.endswith(suffix):
            return archive.extractfile(member).read().decode("utf-8").splitlines()
    sys.exit(f"prepare_iwslt14: the archive has no file ending in {suffix!r}; is it IWSLT14 de-en.tgz?")


def train_lines(lines):
    out = []
    for line in lines:
        if META.match(line):
            continue
        out.append(re.sub(r"</?(title|description)>", "", line).strip())
    return out


def xml_segments(lines):
    return [SEG.match(line).group(1).replace("\u2019", "'") for line in lines if SEG.match(line)]


def clean_pairs(pairs, ratio=1.5, low=1, high=175):
    """clean-corpus-n.perl: both sides within [low, high] tokens and length ratio <= ratio."""
    kept = []
    for de, en in pairs:
        a, b = len(de.split()), len(en.split())
        if low <= a <= high and low <= b <= high and a / b <= ratio and b / a <= ratio:
            kept.append((de, en))
    return kept


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", help="path or URL of IWSLT14 de-en.tgz")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    prepare(args.archive, args.out_dir)


def prepare(source, out_dir, log=print):
    """Write ``out_dir/{train,valid,test}.{de,en}`` from the archive at ``source`` (a path or
    URL); exits with a one-line message when the archive is not IWSLT14's."""
    from sacremoses import MosesTokenizer

    tokenizers = {lang: MosesTokenizer(lang=lang) for lang in LANGS}

    def tokenize(lang, lines):
        return [tokenizers[lang].tokenize(line, return_str=True, escape=True) for line in lines]

    archive = open_archive(source)
    raw = {lang: train_lines(member_text(archive, f"train.tags.de-en.{lang}")) for lang in LANGS}
    if len(raw["de"]) != len(raw["en"]):
        sys.exit(
            f"prepare_iwslt14: train.tags.de-en.de has {len(raw['de'])} text lines but "
            f"train.tags.de-en.en has {len(raw['en'])}"
        )
    tokenized = {lang: tokenize(lang, raw[lang]) for lang in LANGS}
    pairs = [(de.lower(), en.lower()) for de, en in clean_pairs(zip(tokenized["de"], tokenized["en"]))]
    splits = {
        "valid": [p for i, p in enumerate(pairs, start=1) if i % 23 == 0],
        "train": [p for i, p in enumerate(pairs, start=1) if i % 23 != 0],
    }
    test = {lang: [] for lang in LANGS}
    for name in TEST_SETS:
        for lang in LANGS:
            segments = xml_segments(member_text(archive, f"{name}.de-en.{lang}.xml"))
            test[lang] += [line.lower() for line in tokenize(lang, segments)]
    splits["test"] = list(zip(test["de"], test["en"]))
    os.makedirs(out_dir, exist_ok=True)
    for split, split_pairs in splits.items():
        for i, lang in enumerate(LANGS):
            path = os.path.join(out_dir, f"{split}.{lang}")
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write("".join(pair[i] + "\n" for pair in split_pairs))
            os.replace(path + ".tmp", path)
        log(f"{split}: {len(split_pairs)} pairs")


if __name__ == "__main__":
    main()
