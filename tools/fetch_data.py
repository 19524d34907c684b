"""Download the corpora tfkd's specs read into the layout ``TFKD_DATA_DIR`` expects.

    python tools/fetch_data.py multi30k_deen sst2 DIR     # some corpora into DIR/<name>/
    python tools/fetch_data.py all DIR                    # every corpus below
    python tools/fetch_data.py --list                     # what each name fetches, from where
    python tools/fetch_data.py iwslt14_deen DIR --archive de-en.tgz   # a local copy instead

Each file comes from a public copy pinned to a commit and is checked against the SHA-256 sum
recorded for it (the same sums as the corpora's ``MANIFEST.json``), so a run on fetched data
reads byte for byte what tfkd's measured results read. Each file is written to ``DIR/<name>/``
only once its sum checks out (atomically); a file already there (from an earlier run, or put
there by hand) is checked and kept, so running the tool again fetches only what is missing.

- ``multi30k_deen``, ``sst2``, ``ptb``, and WikiText-2's valid and test files are plain files.
- WikiText-2's train file comes from a zip whose member went through a CSV round trip (article
  chunks in a different order, each wrapped in quotes, inner quotes doubled); it is cleaned up
  as its ``MANIFEST.json`` describes (drop lines that are exactly ``"``, strip a leading ``"``,
  ``""`` -> ``"``), which gives the published counts. It is not byte-identical to the official
  ``wiki.train.tokens`` (the article order differs).
- ``iwslt14_deen`` is the IWSLT 2014 ``de-en.tgz`` archive (fairseq's mirror) run through
  ``tools/prepare_iwslt14.py``. No sum is recorded for the archive (the tool prints the one it
  got), and sacremoses stands in for Moses' Perl tokenizer, so valid and test are not checked
  against the shared copies' sums.

``--mirror URL`` fetches ``URL/<host>/<path>`` instead of ``https://<host>/<path>`` (a local
copy of the sources, or a test's file server). Without network each missing file is one line
saying what to download and where to put it; exit code 1.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile

TOOLS = os.path.dirname(os.path.abspath(__file__))

GITHUB = "https://raw.githubusercontent.com"
MULTI30K = f"{GITHUB}/OpenNMT/OpenNMT-py/dfd709347344498c472c8fcc594c2089aedaebc6/data/multi30k"
SST2 = f"{GITHUB}/tacchinotacchi/distil-bilstm/44d3abb1ef7f54d000d95f2634b9b2a275cd4b01/SST-2"
PENN = f"{GITHUB}/pytorch/examples/c456de8acf3f8b0bc2178b1e55ebabee22ab1801/word_language_model/data/penn"
WIKITEXT2 = f"{GITHUB}/pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8/word_language_model/data/wikitext-2"
WIKITEXT2_ZIP = f"{GITHUB}/longluv1605/drive/8e58417f2423661c49c46ecd17b3df8f13792a5c/wikitext-2-v1.zip"
IWSLT14 = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"


def plain(url):
    """The file at ``url`` as it is."""
    return {"url": url}


def zip_member(url, member, cleanup=None):
    """A member of the zip at ``url``, optionally rewritten by ``cleanup`` (bytes -> bytes)."""
    return {"url": url, "member": member, "cleanup": cleanup}


def undo_csv_round_trip(data):
    """WikiText-2 train as the zip holds it -> the WikiText text (its MANIFEST.json's steps)."""
    lines = data.decode("utf-8").split("\n")
    lines = [line[1:] if line.startswith('"') else line for line in lines if line != '"']
    return "\n".join(lines).replace('""', '"').encode("utf-8")


# name -> {file in DIR/<name>/: (how to get it, sha256)}
CORPORA = {
    "multi30k_deen": {
        "train.de": (plain(f"{MULTI30K}/train.de"), "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72"),
        "train.en": (plain(f"{MULTI30K}/train.en"), "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6"),
        "valid.de": (plain(f"{MULTI30K}/val.de"), "366863c09b91e91c100bc87501a85fe1ce49270c2301de46d39075aee5ce8021"),
        "valid.en": (plain(f"{MULTI30K}/val.en"), "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227"),
        "test.de": (plain(f"{MULTI30K}/test.de"), "c1d2f544471a7387e37d15f1adf075ff7d6fe57a30840bb969281ae102d24cb1"),
        "test.en": (plain(f"{MULTI30K}/test.en"), "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182"),
    },
    "sst2": {
        "train.tsv": (plain(f"{SST2}/train.tsv"), "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),
        "dev.tsv": (plain(f"{SST2}/dev.tsv"), "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
        "test.tsv": (plain(f"{SST2}/test.tsv"), "69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13"),
    },
    "ptb": {
        "train.txt": (plain(f"{PENN}/train.txt"), "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
        "valid.txt": (plain(f"{PENN}/valid.txt"), "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
        "test.txt": (plain(f"{PENN}/test.txt"), "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
    },
    "wikitext2": {
        "train.txt": (
            zip_member(WIKITEXT2_ZIP, "wikitext-2/wiki.train.tokens", undo_csv_round_trip),
            "728c77e87e176af4730f9a80fc6008bcaff421a7202c1c048877c0eec3685f89",
        ),
        "valid.txt": (
            plain(f"{WIKITEXT2}/valid.txt"),
            "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
        ),
        "test.txt": (
            plain(f"{WIKITEXT2}/test.txt"),
            "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
        ),
    },
    # built by tools/prepare_iwslt14.py from the archive (see the module doc)
    "iwslt14_deen": {},
}


class FetchError(Exception):
    """One line for the user."""


def source_url(url, mirror):
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}"


def download(url, mirror, what_to_do):
    """The bytes at ``url`` (through ``mirror``); a missing network or file is a
    :class:`FetchError` ending in ``what_to_do`` (where to put a copy made by hand)."""
    where = source_url(url, mirror)
    try:
        with urllib.request.urlopen(where, timeout=60) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise FetchError(f"{where}: cannot download ({reason}); {what_to_do}") from None


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def write_atomic(path, data):
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def fetch_file(name, how, expected, mirror, directory, zips):
    """``directory/name`` with its recorded sum: kept when already there (put by hand, or by
    an earlier run), else downloaded, checked and written atomically. Returns its record."""
    target = os.path.join(directory, name)
    record = {"sha256": expected, "source": how["url"], **({"member": how["member"]} if "member" in how else {})}
    if os.path.isfile(target):
        with open(target, "rb") as f:
            got = sha256(f.read())
        if got != expected:
            raise FetchError(f"{target}: sha256 {got}, expected {expected}; remove it to download it again")
        return record, False
    by_hand = f"download {how['url']} by hand and put it at {target}"
    if "member" in how:
        if how["url"] not in zips:
            by_hand = (
                f"download {how['url']} by hand, take its member {how['member']} and clean it up as "
                f"tools/fetch_data.py's undo_csv_round_trip does into {target}"
            )
            zips[how["url"]] = download(how["url"], mirror, by_hand)
        try:
            with zipfile.ZipFile(io.BytesIO(zips[how["url"]])) as archive:
                data = archive.read(how["member"])
        except (zipfile.BadZipFile, KeyError) as e:
            raise FetchError(f"{source_url(how['url'], mirror)}: not a zip with {how['member']} ({e})") from None
        if how.get("cleanup"):
            data = how["cleanup"](data)
    else:
        data = download(how["url"], mirror, by_hand)
    got = sha256(data)
    if got != expected:
        raise FetchError(
            f"{source_url(how['url'], mirror)}: sha256 {got} for {target}, expected {expected}; "
            "this copy differs from the one tfkd's results were measured on"
        )
    write_atomic(target, data)
    return record, True


IWSLT14_FILES = [f"{split}.{lang}" for split in ("train", "valid", "test") for lang in ("de", "en")]


def fetch_corpus(name, root, mirror=None, archive=None, log=print):
    """Fetch corpus ``name`` into ``root/name``; returns that folder."""
    directory = os.path.join(root, name)
    os.makedirs(directory, exist_ok=True)
    if name == "iwslt14_deen":
        if all(os.path.isfile(os.path.join(directory, f)) for f in IWSLT14_FILES) and not archive:
            log(f"{name}: complete in {directory}")
            return directory
        manifest = prepare_iwslt14(directory, root, mirror, archive, log=lambda message: log(f"{name}: {message}"))
    else:
        zips, manifest, fetched = {}, {}, 0
        for file, (how, expected) in CORPORA[name].items():
            manifest[file], new = fetch_file(file, how, expected, mirror, directory, zips)
            fetched += new
            log(f"{name}/{file}: {'downloaded' if new else 'present'}, sha256 checked")
        if not fetched:
            log(f"{name}: complete in {directory}")
            return directory
    write_atomic(
        os.path.join(directory, "MANIFEST.json"),
        json.dumps({"name": name, "fetched_by": "tools/fetch_data.py", "files": manifest}, indent=2).encode(),
    )
    log(f"{name}: written to {directory}")
    return directory


def prepare_iwslt14(directory, root, mirror, archive, log=print):
    sys.path.insert(0, TOOLS)
    import prepare_iwslt14

    if archive:
        if not os.path.isfile(archive):
            raise FetchError(f"--archive {archive}: no such file")
        with open(archive, "rb") as f:
            data = f.read()
    else:
        data = download(
            IWSLT14,
            mirror,
            f"download {IWSLT14} by hand and run: python tools/fetch_data.py iwslt14_deen {root} --archive de-en.tgz",
        )
    path = os.path.join(directory, "de-en.tgz")
    write_atomic(path, data)
    try:
        prepare_iwslt14.prepare(path, directory, log=log)
    finally:
        os.remove(path)
    manifest = {
        "de-en.tgz": {
            "sha256": sha256(data),
            "bytes": len(data),
            "source": archive or IWSLT14,
            "note": "no sum is recorded for the archive; this is the one used",
        }
    }
    for file in IWSLT14_FILES:
        with open(os.path.join(directory, file), "rb") as f:
            manifest[file] = {"sha256": sha256(f.read())}
    return manifest


def describe():
    lines = []
    for name, files in CORPORA.items():
        if not files:
            lines.append(f"{name}: {IWSLT14} -> tools/prepare_iwslt14.py -> train, valid, test .de/.en")
            continue
        for file, (how, expected) in files.items():
            origin = how["url"] + (f" (zip member {how['member']})" if "member" in how else "")
            lines.append(f"{name}/{file}: {origin} sha256 {expected}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"corpora: {', '.join(CORPORA)} or all; then DIR")
    parser.add_argument("--mirror", metavar="URL", help="fetch URL/<host>/<path> instead of https://<host>/<path>")
    parser.add_argument("--archive", metavar="FILE", help="iwslt14_deen: a local de-en.tgz instead of downloading")
    parser.add_argument("--list", action="store_true", help="print every file, its source and its sum")
    args = parser.parse_args(argv)
    if args.list:
        try:
            print(describe())
        except BrokenPipeError:  # | head
            sys.stdout = open(os.devnull, "w")
        return 0
    if len(args.names) < 2:
        parser.error("give one or more corpus names (or all) and the folder to write them to")
    *names, root = args.names
    if names == ["all"]:
        names = list(CORPORA)
    unknown = [n for n in names if n not in CORPORA]
    if unknown:
        parser.error(f"unknown corpus {unknown[0]!r}; choose from {', '.join(CORPORA)} or all")
    os.makedirs(root, exist_ok=True)
    try:
        for name in names:
            fetch_corpus(name, root, args.mirror, args.archive)
    except FetchError as e:
        print(f"fetch_data: {e}", file=sys.stderr)
        return 1
    print(f"export TFKD_DATA_DIR={os.path.abspath(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
