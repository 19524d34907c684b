"""The train step under MirroredStrategy over two logical CPU devices equals one device."""

import json
import os
import subprocess
import sys


def test_mirrored_two_cpus_matches_one_device():
    script = os.path.join(os.path.dirname(__file__), "mirrored_step.py")
    out = subprocess.run([sys.executable, script, "one_device", "mirrored"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    one, mirrored = result["one_device"], result["mirrored"]
    assert one["replicas"] == 1 and mirrored["replicas"] == 2
    assert mirrored["tokens"] == one["tokens"] == 2 * 21
    assert one["loss"] > 1.0  # a real loss, not the 0 a raw tensor reads as under a strategy
    assert abs(mirrored["loss"] - one["loss"]) < 1e-4 * one["loss"]
    assert abs(mirrored["nll"] - one["nll"]) < 1e-4 * one["nll"]
    # same gradients -> same weights after two SGD steps
    assert abs(mirrored["weight_l1"] - one["weight_l1"]) < 1e-4 * one["weight_l1"]
