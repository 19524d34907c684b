import os
import signal
import sys

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# a suite started in the background by a non-interactive shell (`bash .ci/run &`) inherits an
# ignored SIGINT, and Python then installs no KeyboardInterrupt handler: give it the one an
# interactive start has, so the Ctrl-C tests (and the commands they start) see what a user's does
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# absolute, against the folder pytest was started in (the README's TFKD_DATA_DIR=../shared/data
# is relative to the checkout), before any test runs tfkd in a temporary folder
DATA_DIR = os.path.abspath(os.environ.get("TFKD_DATA_DIR", os.path.join(REPO, "..", "shared", "data")))
os.environ["TFKD_DATA_DIR"] = DATA_DIR  # for the tfkd subprocesses the tests start
# more xdist workers than cores (pytest_xdist_auto_num_workers): each worker's TensorFlow, and
# every tfkd command it starts, runs its ops on one thread instead of one per core, so 3 workers
# do not share 2 cores among 6 busy threads. The three kill-anywhere files at -n 3 on 2 cores,
# alternated twice: 217 and 222 s against 235 and 233 s with TensorFlow's default.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")) > (os.cpu_count() or 1):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
# a stage store of the user's would hand the tests' runs stages made by other code
os.environ.pop("TFKD_STAGE_STORE", None)
# the tests mirror the package tree (tests/methods/soft_target/, tests/tasks/translation/, ...);
# the modules they share (helpers, shared_runs, toy_plugins, user_layers, tiny_mask_task, this
# conftest's write_corpus) stay in tests/, importable from every folder
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the kill-anywhere checks live in a shared module its tests call: its asserts say what differed
pytest.register_assert_rewrite("kill_anywhere")


@pytest.fixture(scope="session")
def data_dir():
    path = os.path.join(DATA_DIR, "multi30k_deen")
    if not os.path.exists(os.path.join(path, "train.de")):
        pytest.fail(f"real data not found at {path}; set TFKD_DATA_DIR")
    return DATA_DIR


def write_corpus(directory, split, pairs, src="de", tgt="en"):
    """Aligned ``{split}.{src}`` / ``{split}.{tgt}`` files of ``pairs``."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{split}.{src}"), "w") as f:
        f.write("".join(s + "\n" for s, _ in pairs))
    with open(os.path.join(directory, f"{split}.{tgt}"), "w") as f:
        f.write("".join(t + "\n" for _, t in pairs))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A small learned WordPiece tokenizer."""
    from tfkd import data as data_lib
    from tfkd.spec import TokenizerSpec

    directory = tmp_path_factory.mktemp("vocab")
    sentences = [f"the cat number {i} sat on the mat ." for i in range(50)] + ["a dog runs ."] * 20
    path = str(directory / "v.txt")
    assert data_lib.learn_vocabulary(sentences, TokenizerSpec(vocab_size=200), path) == {}  # WordPiece: no settings
    return data_lib.make_tokenizer(path)


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: half as many workers again as CPUs. Much of a test's time is single-threaded
    (TensorFlow's import, tracing, Python between ops): three tiny ``tfkd run``s side by side on
    2 cores took 13.4 s each against 16.0 s each for two and 24 s for one alone."""
    return max(2, (os.cpu_count() or 1) * 3 // 2)


# the longest files first: the suite runs one file per worker (pytest-xdist --dist loadfile), and
# a long file started last would leave the other workers idle at the end
LONGEST_FIRST = (  # by their durations in one -n 3 run of the suite on 2 cores
    "test_distribute.py",
    "test_soft_target_end_to_end.py",
    "test_two_stage_end_to_end.py",
    "test_mask_task_end_to_end.py",
    "test_exporters.py",
    "test_adapters_end_to_end.py",
    "test_two_stage_kill_anywhere.py",
    "test_cli.py",
    "test_ensemble_end_to_end.py",
    "test_ensemble_kill_anywhere.py",
    "test_report.py",
    "test_pipeline.py",
    "test_two_stage_causal_end_to_end.py",
    "test_two_stage_mass_end_to_end.py",
    "test_mask_task_distiller.py",
    "test_stopping.py",
)


def pytest_configure(config):
    """pytest-xdist hands out whole files (--dist loadfile) ordered by how many tests each holds
    unless told not to (its --loadscope-reorder default), which sent the one-test kill-anywhere
    files last, onto the end of the run; LONGEST_FIRST's order is the one to keep."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file and among the others stays
