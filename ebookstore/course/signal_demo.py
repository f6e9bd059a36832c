"""A small program with a handler for each signal: `python -m ebookstore.course.signal_demo CONFIG.json`.

Notebook 07 sends it signals and reads what it printed:
- SIGTERM: clean up (here: remove its PID file), then exit 0;
- SIGINT (Ctrl-C): say so, clean up, exit 130 (128 + 2, the shell's convention);
- SIGHUP: read the configuration file again and go on;
- SIGKILL: no handler can run; the PID file stays behind.
"""
import json
import os
import signal
import sys
import time
from pathlib import Path


def main(config_path: Path) -> int:
    pid_file = config_path.with_suffix(".pid")
    pid_file.write_text(str(os.getpid()))
    config = json.loads(config_path.read_text())

    def clean_up_and_exit(signum, frame):
        name = signal.Signals(signum).name
        print(f"{name}: cleaning up (removing {pid_file.name}) and exiting", flush=True)
        pid_file.unlink(missing_ok=True)
        sys.exit(130 if signum == signal.SIGINT else 0)

    def reload(signum, frame):
        nonlocal config
        config = json.loads(config_path.read_text())
        print(f"SIGHUP: configuration reloaded, greeting is now {config['greeting']!r}", flush=True)

    signal.signal(signal.SIGTERM, clean_up_and_exit)
    signal.signal(signal.SIGINT, clean_up_and_exit)
    signal.signal(signal.SIGHUP, reload)
    print(f"ready, PID {os.getpid()}, greeting {config['greeting']!r}", flush=True)
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
