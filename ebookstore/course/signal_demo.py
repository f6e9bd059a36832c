"""A small program with a handler for each signal: `python -m ebookstore.course.signal_demo CONFIG.json`.

Notebook 07 sends it signals and reads what it printed:
- SIGTERM: finish the step in progress, clean up (here: remove its PID file), then exit 0;
- SIGINT (Ctrl-C): the same, and exit 130 (128 + 2, the shell's convention);
- SIGHUP: read the configuration file again before the next step and go on;
- SIGKILL: no handler can run; the PID file stays behind.

The handlers only note which signal came; the main loop reads that note between two steps
and does the work. A handler runs wherever the program happens to be: one that exits there
(sys.exit in the handler) abandons the step halfway. One that returns lets the program go on
where it was — even a time.sleep goes on sleeping the rest of its time (PEP 475) — so the
step in progress completes.
"""
import json
import os
import signal
import sys
import time
from pathlib import Path


def main(config_path: Path, step_seconds: float = 0.1) -> int:
    pid_file = config_path.with_suffix(".pid")
    pid_file.write_text(str(os.getpid()))
    config = json.loads(config_path.read_text())
    received = []  # the signals not yet acted on, noted by the handlers

    def note(signum, frame):
        received.append(signum)  # only this: the loop below does the work, between two steps

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, note)
    print(f"ready, PID {os.getpid()}, greeting {config['greeting']!r}", flush=True)
    while True:
        time.sleep(step_seconds)  # one step of work: a signal's handler runs, then the sleep goes on
        while received:
            signum = received.pop(0)
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                config = json.loads(config_path.read_text())
                print(f"SIGHUP: configuration reloaded, greeting is now {config['greeting']!r}", flush=True)
                continue
            print(f"{name}: step finished, cleaning up (removing {pid_file.name}) and exiting", flush=True)
            pid_file.unlink(missing_ok=True)
            return 130 if signum == signal.SIGINT else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
