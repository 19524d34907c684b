"""Finished stages shared between runs by their key: ``TFKD_STAGE_STORE=DIR``.

A stage's key hashes everything it reads (its slice of the spec, its input files by content,
the keys of the stages before it), so two runs whose stage has the same key would compute the
same thing: a sweep over student settings in several run folders fine-tunes and caches its
teacher once, as a build cache (ccache, Bazel) or the fingerprint cache of Hugging Face
``datasets`` reuses work. With the variable set, a stage that is not done in its run is first
looked up in the store: found, its folder is copied into the run (with this run's
``spec.yaml``); not found, it runs and its finished folder is copied into the store.

Two processes that need the same stage at once do not both compute it: the first holds the
key's lock file while it runs the stage, the second waits for it (a killed process's lock is
released by the system) and copies the result. The store is keyed by inputs, not by tfkd's
code: its folders sit under tfkd's version, and a store kept across changes to the code of a
stage should be emptied by hand (``rm -rf DIR``). Nothing in it is ever modified in place: a
folder appears by one rename, complete.
"""

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import time

from tfkd.errors import StageError

log = logging.getLogger("tfkd")

ENV = "TFKD_STAGE_STORE"


class StageStore:
    def __init__(self, root):
        self.root = os.path.abspath(root)

    @classmethod
    def from_environment(cls):
        """The store ``TFKD_STAGE_STORE`` names, or ``None`` when it is unset or empty."""
        root = os.environ.get(ENV, "").strip()
        return cls(root) if root else None

    def folder(self, key):
        from importlib import metadata  # tfkd's version, without importing tfkd (whose __init__ imports this)

        try:
            version = metadata.version("tfkd")
        except metadata.PackageNotFoundError:
            version = "unknown"
        return os.path.join(self.root, version, key[:2], key)

    @contextlib.contextmanager
    def claim(self, name, key):
        """Hold ``key``'s lock while the block runs; another process holding it is waited for."""
        lock_path = self.folder(key) + ".lock"
        try:
            os.makedirs(os.path.dirname(lock_path), exist_ok=True)
            lock = open(lock_path, "a")
        except OSError as e:
            raise StageError(f"{ENV}={self.root}: cannot write the stage store ({e.strerror})") from None
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                log.info("stage %s: waiting for another process computing it into the stage store", name)
                start = time.time()
                fcntl.flock(lock, fcntl.LOCK_EX)  # a stop signal raises out of the wait
                log.info("stage %s: the other process ended after %.0fs", name, time.time() - start)
            yield

    def marker(self, key, marker_name):
        """The finished stage's marker in the store for ``key``, or ``None``."""
        try:
            with open(os.path.join(self.folder(key), marker_name)) as f:
                marker = json.load(f)
        except (OSError, ValueError):
            return None
        return marker if marker.get("key") == key else None

    def copy_out(self, key, target, ignore=()):
        """Copy the stored folder of ``key`` to ``target`` (which must not exist)."""
        shutil.copytree(self.folder(key), target, ignore=shutil.ignore_patterns(*ignore))

    def copy_in(self, key, source):
        """Copy the finished stage folder ``source`` into the store as ``key``'s, in one rename;
        a folder already stored for the key is kept."""
        final = self.folder(key)
        if os.path.isdir(final):
            return
        incoming = f"{final}.incoming-{os.getpid()}"
        shutil.rmtree(incoming, ignore_errors=True)
        try:
            shutil.copytree(source, incoming)
            os.rename(incoming, final)
        except OSError as e:
            shutil.rmtree(incoming, ignore_errors=True)
            log.warning("stage store: could not keep %s in %s (%s); the run goes on", source, final, e.strerror or e)
