"""SavedModels for TF Serving, written atomically into ``<out>/<model_name>/<version>/``.

What the SavedModel computes is the task's business (:meth:`tfkd.tasks.Task.export`); this
module owns the layout TF Serving expects and the guarantee that a version folder is either
complete or absent.
"""

import logging
import os
import shutil
import time

from tfkd.runner import move_into_place

log = logging.getLogger("tfkd")


def export_saved_model(write, out_dir, model_name, version):
    """Call ``write(path)`` into a hidden temporary folder beside the target (TF Serving ignores
    non-numeric folder names) and rename it to ``<out_dir>/<model_name>/<version>/``; returns
    that path."""
    base = os.path.join(out_dir, model_name)
    final = os.path.join(base, str(version))
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(base, f".tmp-{version}-{os.getpid()}-{int(time.time() * 1000)}")
    try:
        write(tmp)
        move_into_place(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def directory_size(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
