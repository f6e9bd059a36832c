"""Exercise 07 — signals and killing: a graceful stop, and a worker that handles its signals.

Notebook: notebooks/07_signals_and_killing.ipynb · check: check("ex07") or `ebookstore check ex07`

Run the worker by hand: python -m exercises.ex07_signals_and_killing CONFIG.json
"""
import json
import signal
import sys
import time
from pathlib import Path

import psutil


def stop_gracefully(pid: int, timeout: float = 5.0) -> str:
    """Stop process `pid`: SIGTERM, wait up to `timeout` s, then SIGKILL.

    Return "terminated" if it exited after SIGTERM, "killed" if it needed
    SIGKILL. A process that has exited but was not yet reaped by its parent
    (a zombie) has exited. Never wait longer than about `timeout` + 1 s.
    """
    proc = psutil.Process(pid)
    proc.terminate()
    if _wait_exited(proc, timeout):
        return "terminated"
    proc.kill()
    _wait_exited(proc, 1.0)
    return "killed"


def _wait_exited(proc: psutil.Process, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def run_worker(config_path: Path, item_seconds: float = 0.3) -> int:
    """A worker that handles its signals; return its exit status.

    Forever: read the label from the JSON file `config_path` ({"label": "..."}),
    then process items one by one. Processing item n is sleeping
    `item_seconds`, then printing "<label> item <n>" (flush every line).
    - SIGHUP: read the configuration again before the next item and print "reloaded".
    - SIGTERM: finish the current item, print "bye", return 0.
    Install the handlers before printing "ready" (first line).
    """
    state = {"stop": False, "reload": False}
    signal.signal(signal.SIGTERM, lambda signum, frame: state.update(stop=True))
    signal.signal(signal.SIGHUP, lambda signum, frame: state.update(reload=True))
    label = json.loads(Path(config_path).read_text())["label"]
    print("ready", flush=True)
    n = 0
    while not state["stop"]:
        if state["reload"]:
            state["reload"] = False
            label = json.loads(Path(config_path).read_text())["label"]
            print("reloaded", flush=True)
        n += 1
        time.sleep(item_seconds)  # a signal handler runs, then the sleep goes on: the item completes
        print(f"{label} item {n}", flush=True)
    print("bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_worker(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.3))
