"""Runs a spec's stages into ``<run_dir>/<name>/<stage>/``.

Each stage has a key: a hash of its own slice of the spec, the keys of the stages it reads
and the fingerprints of its input files. A stage works in ``<stage>.partial/`` (where a
killed training stage finds its checkpoint), and on success writes its marker there and is
renamed to ``<stage>/`` in one step, so a half-written stage is never taken for a finished
one. A finished stage whose marker holds the current key is skipped; changing its config
changes its key and the keys of everything downstream.
"""

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time

from tfkd import spec as spec_lib
from tfkd import stage_changes, stopping
from tfkd.errors import StageError, io_problem
from tfkd.failpoints import failpoint
from tfkd.run_log import RunLog
from tfkd.stage_store import StageStore

log = logging.getLogger("tfkd")

MARKER = "stage.json"
SPEC_FILE = "spec.yaml"  # the resolved spec: of each finished stage, and of the run (the last finished)
ORIGIN_FILE = "origin.json"
LOG_FILE = "log.txt"
INPUTS_FILE = stage_changes.INPUTS_FILE


def sha256_file(path, cache={}):  # noqa: B006 (the process-wide memo)
    """The SHA-256 of a file, remembered for the process by path, size and modification time."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        cache[key] = digest.hexdigest()
    return cache[key]


def _by_content(value):
    """``value`` (a stage's config) with each absolute path that exists replaced by what it
    names: a file by its SHA-256, a folder (also ``package:MODULE/DIR``) by its real path
    (links resolved). Specs store
    local paths absolute (:data:`tfkd.spec.LocalPath`), so the same inputs reached through
    another path or a moved copy give the same key."""
    if isinstance(value, dict):
        return {k: _by_content(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_by_content(v) for v in value]
    if isinstance(value, str) and value.startswith("package:"):  # a folder inside an installed package
        try:
            value = spec_lib.package_folder(value)
        except ValueError:
            return value
    if isinstance(value, str) and os.path.isabs(value):
        if os.path.isfile(value):
            return f"sha256:{sha256_file(value)}"
        if os.path.isdir(value):
            return os.path.realpath(value)
    return value


def _json_hash(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def move_into_place(source, target):
    """Rename the finished directory ``source`` to ``target``, replacing any old ``target``.

    Each step is a rename, so ``target`` is at every moment absent, the old complete
    directory, or the new complete one; never partly written.
    """
    if os.path.exists(target):
        stale = f"{target}.stale-{int(time.time() * 1000)}"
        os.rename(target, stale)
        os.rename(source, target)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.rename(source, target)


class Stage:
    """A step of a run: what keys its output (:meth:`config`, :meth:`input_files`) and the
    work (:meth:`run`). The stages it reads are the plan's (:class:`tfkd.plan.PlannedStage`)."""

    name = None
    # in a multi-worker run (tfkd.distribute), whether every worker runs this stage (it trains
    # under the strategy, whose steps need them all) or the chief alone does while the others
    # wait for its marker
    runs_on_every_worker = False
    # whether the stage builds and runs models under the run's train.precision (a teacher's
    # fine-tuning and caches, pre-training): its key then holds train.precision when that is
    # not float32 (a train stage's own train section holds it already)
    runs_in_train_precision = False

    def config(self, spec):
        """The slice of the spec that determines this stage's output."""
        raise NotImplementedError

    def input_files(self, spec):
        return []

    def resumable(self, spec):
        """Keys of :meth:`config` (dotted, ``train.learning_rate``) that may change while the
        stage still goes on from its earlier work: a killed or failed run's partial work, or
        (when the stage keeps what it resumes from) a finished run's."""
        return ()

    def can_continue(self, spec, workdir):
        """Whether the work in ``workdir`` (the stage's ``.partial`` folder or its finished
        folder) can go on under ``spec`` with :meth:`resumable` keys changed."""
        return True

    def run(self, context, workdir):
        """Do the work into ``workdir``; return a dict of results for the marker."""
        raise NotImplementedError


class _BuiltStages:
    """``{name: Stage}`` of a plan, each built when first asked for (importing its module)."""

    def __init__(self, plan):
        self.plan = plan

    def __getitem__(self, name):
        return self.plan[name].make()

    def __contains__(self, name):
        return name in self.plan

    def __iter__(self):
        return iter(self.plan.names)

    def values(self):
        return [self[name] for name in self.plan.names]


class Runner:
    """Resolves stage keys and runs what is not done yet."""

    def __init__(self, spec, plan, worker=None):
        self.spec = spec
        self.plan = plan  # the run's tfkd.plan.RunPlan: names, order, dependencies
        self.stages = _BuiltStages(plan)
        self.run_dir = os.path.join(spec.run_dir, spec.name)
        self._keys = {}
        # this process in a multi-worker run (tfkd.distribute.WorkerRole), else None
        from tfkd.distribute import current_worker

        self.worker = worker if worker is not None else current_worker()
        # finished stages shared with other runs (TFKD_STAGE_STORE); a multi-worker run's
        # workers must all run its training stages, so it computes every stage itself
        self.store = StageStore.from_environment() if self.worker is None else None

    @property
    def writes(self):
        """Whether this process writes the run directory: the chief of a multi-worker run, or
        the only process."""
        return self.worker is None or self.worker.chief

    def resume_dir(self, name):
        """Where stage ``name`` finds the partial work it resumes from: ``None`` for its own
        work folder; on a worker other than the chief, the chief's (the other workers' work
        folders are scratch, never resumed from)."""
        return None if self.writes else self.stage_dir(name) + ".partial"

    def stage_dir(self, name):
        return os.path.join(self.run_dir, name)

    def key(self, name):
        return _json_hash(self.key_inputs(name))

    def key_inputs(self, name):
        """What the stage's key hashes: its config (paths by content), the keys of the stages
        it reads and the fingerprints of its input files."""
        if name not in self._keys:
            stage = self.stages[name]
            files = []
            for path in stage.input_files(self.spec):
                if not os.path.exists(path):
                    raise StageError(
                        f"{path}: file not found (needed by stage {name}){_missing_file_hint(self.spec, path)}"
                    )
                # by content, in the order the stage lists them: moved or renamed files keep the key
                files.append(sha256_file(path))
            config = stage.config(self.spec)
            precision = getattr(getattr(self.spec, "train", None), "precision", "float32")
            if stage.runs_in_train_precision and precision != "float32":
                config = {**config, "train.precision": precision}
            self._keys[name] = {
                "stage": name,
                "config": _by_content(config),
                "upstream": {dep: self.key(dep) for dep in self.plan.dependencies(name)},
                "files": files,
            }
        return self._keys[name]

    def marker(self, name):
        path = os.path.join(self.stage_dir(name), MARKER)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def is_done(self, name):
        marker = self.marker(name)
        return marker is not None and marker.get("key") == self.key(name)

    def is_finished(self, name):
        """A finished stage directory exists (whatever the inputs are now: reading the data
        to recompute keys is not needed to use a finished run)."""
        return self.marker(name) is not None

    def run(self, names, context):
        """Run ``names`` (skipping those done). The run directory is made by the first stage
        that runs, its ``log.txt`` gets every log line of the command, and its ``spec.yaml``
        is rewritten only as stages finish."""
        log_file = RunLog(os.path.join(self.run_dir, LOG_FILE) if self.writes else None)
        log.addHandler(log_file)
        level = log.level
        if log.getEffectiveLevel() > logging.INFO:  # the file keeps INFO lines even when the terminal does not
            log.setLevel(logging.INFO)
        end = "ok"
        try:
            return self._run(names, context)
        except BaseException as e:
            end = f"error: {e}" if str(e) else f"stopped: {type(e).__name__}"
            log_file.write_line(end)
            raise
        finally:
            log.setLevel(level)
            log.removeHandler(log_file)
            log_file.close()
            if self.worker is not None and self.worker.chief:  # the other workers wait for this
                from tfkd.distribute import announce_chief_end

                announce_chief_end(end)

    def _run(self, names, context):
        if not self.writes:
            return self._run_on_worker(names, context)
        results = {}
        for name in names:
            for dep in self.plan.dependencies(name):
                if dep not in names and not self.is_done(dep):
                    raise _not_done(name, dep)
            if self.is_done(name):
                log.info("stage %s: already done (%s), skipping", name, self.stage_dir(name))
                results[name] = self.marker(name)["results"]
                continue
            stopping.raise_if_requested()  # a signal during the stage before: stop between stages
            try:
                with stopping.interrupts_kept():  # a stop that Keras swallowed still stops the stage
                    results[name] = self._run_stage(name, context)
            except Exception as e:  # a full disk or a read-only folder: one line, not a traceback
                problem = io_problem(e)
                if problem:
                    raise StageError(f"stage {name}: {problem}; the stages finished before it are kept") from None
                raise
        return results

    def _run_stage(self, name, context):
        if self.store is None:
            return self._compute_stage(name, context)
        key = self.key(name)
        with self.store.claim(name, key):
            results = self._take_from_store(name, key)
            if results is None:
                results = self._compute_stage(name, context)
                self.store.copy_in(key, self.stage_dir(name))
        return results

    def _take_from_store(self, name, key):
        """Stage ``name`` copied from the store into place with this run's spec, or ``None``."""
        marker = self.store.marker(key, MARKER)
        if marker is None:
            return None
        partial = self.stage_dir(name) + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(self.run_dir, exist_ok=True)
        self.store.copy_out(key, partial, ignore=(SPEC_FILE,))
        self._dump_spec(os.path.join(partial, SPEC_FILE))
        move_into_place(partial, self.stage_dir(name))
        self._write_run_spec()
        where, seconds = self.store.folder(key), marker["results"].get("seconds")
        log.info("stage %s: taken from the stage store (%s; it ran in %ss there)", name, where, seconds)
        return marker["results"]

    def _compute_stage(self, name, context):
        key = self.key(name)
        final = self.stage_dir(name)
        partial = final + ".partial"
        key_file = os.path.join(partial, "KEY")
        inputs_file = os.path.join(partial, INPUTS_FILE)
        done = _read_json(os.path.join(partial, MARKER))
        if done is not None and done.get("key") == key:  # killed between its marker and its rename
            log.info("stage %s: its work in %s is complete; moving it into place", name, partial)
            move_into_place(partial, final)
            self._write_run_spec()
            return done["results"]
        if os.path.isdir(partial):
            previous = open(key_file).read().strip() if os.path.exists(key_file) else None
            changed = self._resumable_changes(name, partial) if previous != key else []
            if previous == key:
                log.info("stage %s: resuming partial work in %s", name, partial)
            elif changed:
                log.info("stage %s: resuming partial work in %s with %s changed", name, partial, ", ".join(changed))
            else:
                what = stage_changes.describe(stage_changes.read_inputs(partial), self.key_inputs(name))
                log.info("stage %s: discarding partial work of other inputs (%s)", name, what)
                shutil.rmtree(partial)
        elif os.path.exists(os.path.join(final, MARKER)):  # finished before, from other inputs
            what = stage_changes.describe(stage_changes.read_inputs(final), self.key_inputs(name))
            log.info("stage %s: running again, its inputs changed: %s", name, what)
            changed = self._resumable_changes(name, final)
            if changed:  # a longer schedule: go on from the finished work, which stays until this ends
                shutil.copytree(final, partial, ignore=shutil.ignore_patterns(MARKER, SPEC_FILE))
                log.info("stage %s: going on from its finished work (%s changed)", name, ", ".join(changed))
        made_run_dir = not os.path.isdir(self.run_dir)
        os.makedirs(partial, exist_ok=True)
        with open(key_file, "w") as f:
            f.write(key)
        _write_json(inputs_file, self.key_inputs(name))
        log.info("stage %s: running into %s", name, partial)
        failpoint(f"stage-start:{name}")
        start = time.time()
        try:
            with self._stage_settings():
                results = self.stages[name].run(context, partial) or {}
        except BaseException:
            _remove_if_unused(partial, made_run_dir and self.run_dir)
            raise
        results.setdefault("seconds", round(time.time() - start, 1))
        # the resolved spec that produced this stage stays with it
        self._dump_spec(os.path.join(partial, SPEC_FILE))
        marker = {"key": key, "stage": name, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}
        tmp_marker = os.path.join(partial, MARKER + ".tmp")
        with open(tmp_marker, "w") as f:
            json.dump(marker, f, indent=2)
        os.replace(tmp_marker, os.path.join(partial, MARKER))
        failpoint(f"stage-finishing:{name}")
        move_into_place(partial, final)
        self._write_run_spec()
        log.info("stage %s: done in %.1fs", name, time.time() - start)
        return results

    @contextlib.contextmanager
    def _stage_settings(self):
        """What the run's ``train`` section sets while any stage runs: op determinism (a
        TensorFlow global) and the dtype policy of ``train.precision``, under which the
        stages that build teachers and pre-train build them (a train stage sets its own
        variant's; a trained student predicts in ``decode.precision``).
        ``train.jit_compile`` goes with the spec each stage reads."""
        from tfkd.precision import op_determinism, precision_policy

        train = getattr(self.spec, "train", None)
        with (
            op_determinism(getattr(train, "deterministic", False)),
            precision_policy(getattr(train, "precision", "float32")),
        ):
            yield

    def _run_on_worker(self, names, context, poll_seconds=1.0):
        """A worker other than the chief: runs the stages that need every worker, each once
        the chief has finished the stages it reads, into a scratch folder of its own
        (``<stage>.worker-N``, removed when the stage is done), then waits for the chief to end
        (it writes the run; a chief that fails fails this worker too)."""
        from tfkd.distribute import chief_end

        results = {}
        for name in names:
            stage = self.stages[name]
            if not stage.runs_on_every_worker:
                log.info("stage %s: run by the chief", name)
                continue
            waited, start = set(), time.time()
            for dep in self.plan.dependencies(name):
                while not self.is_done(dep):
                    if dep not in names:
                        raise _not_done(name, dep)
                    if dep not in waited:
                        log.info("stage %s: waiting for the chief to finish stage %s", name, dep)
                        waited.add(dep)
                    end = chief_end(poll_seconds)
                    if end is not None and not self.is_done(dep):
                        raise StageError(f"stage {name}: the chief ended without finishing stage {dep} ({end})")
            if waited:
                log.info("stage %s: the chief's stages are done after %.0fs", name, time.time() - start)
            if self.is_done(name):
                log.info("stage %s: already done (%s), skipping", name, self.stage_dir(name))
                results[name] = self.marker(name)["results"]
                continue
            scratch = f"{self.stage_dir(name)}.worker-{self.worker.index}"
            shutil.rmtree(scratch, ignore_errors=True)  # never resumed from: the chief's work is
            os.makedirs(scratch)
            log.info(
                "stage %s: running as task %s (worker %d of %d) into %s",
                name,
                self.worker.task,
                self.worker.index + 1,
                self.worker.count,
                scratch,
            )
            start = time.time()
            with self._stage_settings():
                results[name] = self.stages[name].run(context, scratch) or {}
            shutil.rmtree(scratch, ignore_errors=True)
            log.info("stage %s: done in %.1fs", name, time.time() - start)
        log.info("waiting for the chief to finish the run")
        end = chief_end()
        if end != "ok":
            raise StageError(f"the chief stopped: {end}")
        return results

    def _resumable_changes(self, name, folder):
        """The spec keys (``train.steps``) in which the inputs of the work in ``folder`` differ
        from the stage's now, when the stage can go on from that work with them changed (its
        :meth:`Stage.resumable` lists them, nothing else changed, and
        :meth:`Stage.can_continue` agrees); else ``[]``."""
        stage = self.stages[name]
        changed = stage_changes.resumable_changes(
            stage_changes.read_inputs(folder), self.key_inputs(name), stage.resumable(self.spec)
        )
        return changed if changed and stage.can_continue(self.spec, folder) else []

    def _dump_spec(self, path):
        """The resolved spec with ``run_dir`` absolute: a run's spec.yaml names its run from
        any folder (``tfkd config RUN/spec.yaml``)."""
        spec_lib.dump_spec(self.spec.model_copy(update={"run_dir": os.path.abspath(self.spec.run_dir)}), path)

    def _write_run_spec(self):
        """``spec.yaml`` (the spec of the stage that finished last) and ``origin.json`` (where
        the spec's ``imports`` are found), each replaced in one step."""
        for file_name, write in (
            (SPEC_FILE, self._dump_spec),
            (ORIGIN_FILE, lambda path: _write_json(path, {"spec_dir": self.spec._spec_dir})),
        ):
            path = os.path.join(self.run_dir, file_name)
            write(path + ".tmp")
            os.replace(path + ".tmp", path)


def _missing_file_hint(spec, path):
    """How to get a missing input file: the spec's ``data.prepare`` command, else, for a file
    under ``TFKD_DATA_DIR`` (a corpus), where the corpora come from."""
    prepare = getattr(spec.data, "prepare", None)
    if prepare:
        return f"; prepare it with: {prepare}"
    root = os.environ.get("TFKD_DATA_DIR", "").strip()
    if root and os.path.realpath(path).startswith(os.path.realpath(root) + os.sep):
        return (
            f"; TFKD_DATA_DIR is {root}: point it at the corpora, or fetch them there with "
            f"python tools/fetch_data.py all {root}"
        )
    return ""


def _not_done(name, dep):
    return StageError(
        f'stage "{name}" needs stage "{dep}", which is not done for this spec; '
        f"run it first (tfkd run SPEC --stages {dep},{name})"
    )


def _read_json(path):
    """The JSON in ``path``, or ``None`` when there is none (or only part of one)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, default=str)
    os.replace(path + ".tmp", path)


def _remove_if_unused(partial, run_dir):
    """After a failed stage: drop its ``.partial`` folder when it holds nothing to resume from
    (only its key and inputs), and the run folder when this stage made it and nothing else is there."""
    if os.path.isdir(partial) and set(os.listdir(partial)) <= {"KEY", INPUTS_FILE}:
        shutil.rmtree(partial, ignore_errors=True)
    if run_dir and os.path.isdir(run_dir) and os.listdir(run_dir) in ([], [LOG_FILE]):
        shutil.rmtree(run_dir, ignore_errors=True)
