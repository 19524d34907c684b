"""How long a graceful stop takes (tfkd.stopping): run a spec, send SIGTERM (or SIGINT) once a
training stage logs a given step, and report when the checkpoint was written and when the
process was gone.

    python tools/stop_latency.py specs/quickstart.yaml --stage baseline --step 30 \
        --set data.train_limit=2000 --set train.steps=200 --set train.log_every=10

Each named stage is stopped in turn (each run goes on from where the previous one stopped, in
the run directory the spec names); prints one line a stage: the signal, the step it stopped at,
the seconds to the checkpoint (as the command's last line says) and to the exit.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import time


def stop_once(command, stage, step, signum, env):
    """Run ``command``; send ``signum`` after stage ``stage`` logs step ``step``; returns
    ``(exit status, last stderr line, seconds from the signal to the exit)``."""
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    running, sent = False, None
    for line in process.stderr:
        running = running or f"stage {stage}: running" in line
        if running and re.search(rf"tfkd I step {step}/\d+", line):
            process.send_signal(signum)
            sent = time.time()
            break
    rest = process.stderr.read()
    process.wait()
    if sent is None:
        raise SystemExit(f"stage {stage} never logged step {step}; see train.log_every and the stage's log_every")
    return process.returncode, rest.strip().splitlines()[-1], time.time() - sent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec")
    parser.add_argument("--stage", action="append", required=True, help="a training stage to stop (repeatable)")
    parser.add_argument("--step", type=int, default=30, help="send the signal once this step is logged")
    parser.add_argument("--signal", default="SIGTERM", choices=["SIGTERM", "SIGINT"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    args = parser.parse_args(argv)
    command = [sys.executable, "-m", "tfkd.cli", "run", args.spec, *(a for s in args.set for a in ("--set", s))]
    env = dict(os.environ, TFKD_QUIET_PROGRESS="1")
    for stage in args.stage:
        status, last, seconds = stop_once(command, stage, args.step, signal.Signals[args.signal], env)
        written = re.search(r"stopped at step (\d+) .*\(([\d.]+)s after it\)", last)
        where = f"step {written.group(1)}, checkpoint {written.group(2)}s" if written else f"'{last}'"
        print(f"{stage}: {args.signal} after step {args.step}: {where} after it, exit {status} {seconds:.2f}s after it")


if __name__ == "__main__":
    main()
