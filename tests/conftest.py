import os
import sys

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.environ.get("TFKD_DATA_DIR", os.path.join(REPO, "..", "shared", "data"))
os.environ["TFKD_DATA_DIR"] = DATA_DIR  # for the tfkd subprocesses the tests start
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def data_dir():
    path = os.path.join(DATA_DIR, "multi30k_deen")
    if not os.path.exists(os.path.join(path, "train.de")):
        pytest.fail(f"real data not found at {path}; set TFKD_DATA_DIR")
    return DATA_DIR
