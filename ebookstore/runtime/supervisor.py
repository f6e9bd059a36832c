"""The worker supervisor (`ebookstore workers`): keeps N workers running and starts again any that dies.

Why a process of our own: honcho (the Procfile) stops *every* process as soon as one
exits, and `ebookstore up` starts its processes and returns. Neither would bring back a
worker killed with kill -9, or one that gave up while Redis was away. systemd does this in
production (Restart=always, see systemd/); here, this small loop does it:

- start `count` workers, each its own session, each tagged with the run tag (the supervisor's);
- every 0.2 s, look at each: one that exited is started again — at once if it had run a
  few seconds, else after a back-off that doubles up to 10 s (a worker that cannot even
  start, say Redis refuses it, must not be restarted in a tight loop);
- a restarted worker gets a new name (worker-1.2, worker-1.3 …): RQ refuses a name that is
  still registered, and a killed worker had no chance to unregister;
- a dead worker's scheduler child is stopped (it would run on, orphaned), its work-horse is
  left to finish its job;
- on SIGTERM or Ctrl-C: stop restarting, stop the workers (warm: SIGTERM, they finish their
  job), then exit.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time

from ebookstore import workers
from ebookstore.config import Settings
from ebookstore.runtime import processes
from ebookstore.runtime.processes import RUN_TAG
from ebookstore.runtime.stack import Stack, new_tag

QUICK_RESTART_AFTER = 5.0   # seconds: a worker that ran this long is restarted at once (it did start)
MAX_BACKOFF = 10.0          # seconds between restarts of a worker that keeps dying
STOP_TIMEOUT = 10.0         # seconds a worker gets to finish its job when the supervisor stops


@dataclasses.dataclass
class Slot:
    """One worker the supervisor keeps alive: its process name (worker-1) and its history."""

    name: str
    lives: int = 0
    started_at: float = 0.0
    backoff: float = 0.5
    restart_at: float | None = None  # set while it is dead and waiting to be started again


class Supervisor:
    def __init__(self, settings: Settings, count: int, *, weighted: bool = False,
                 with_scheduler: bool = True, tag: str | None = None, log=print):
        self.stack = Stack(settings, tag=tag or os.environ.get(RUN_TAG) or new_tag("cli"), stop_at_exit=False)
        self.slots = [Slot(f"worker-{i}") for i in range(1, count + 1)]
        self.weighted, self.with_scheduler = weighted, with_scheduler
        self.stopping = False
        self.log = log

    def start(self, slot: Slot) -> None:
        slot.lives += 1
        label = slot.name if slot.lives == 1 else f"{slot.name}.{slot.lives}"
        argv = workers.worker_argv(self.stack.settings, f"{self.stack.tag}.{label}",
                                   weighted=self.weighted, with_scheduler=self.with_scheduler)
        proc = self.stack.start(slot.name, argv)
        slot.started_at, slot.restart_at = time.monotonic(), None
        self.log(f"started {label} (PID {proc.pid})", flush=True)

    def exit_status(self, slot: Slot) -> int | None:
        """The worker's exit status if it has exited (-N: killed by signal N), else None."""
        try:
            return self.stack.wait(slot.name, 0)
        except TimeoutError:
            return None

    def check(self, slot: Slot) -> None:
        """Start `slot` again if its worker died (after its back-off)."""
        now = time.monotonic()
        if slot.restart_at is None:
            status = self.exit_status(slot)
            if status is None:
                return
            how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
            if now - slot.started_at >= QUICK_RESTART_AFTER:
                slot.backoff, slot.restart_at = 0.5, now
            else:
                slot.backoff = min(slot.backoff * 2, MAX_BACKOFF)
                slot.restart_at = now + slot.backoff
            self.log(f"{slot.name} {how}; starting it again in {slot.restart_at - now:.1f} s", flush=True)
            self.stop_leftover_scheduler(slot)
        if now >= slot.restart_at and not self.stopping:
            self.start(slot)

    def stop_leftover_scheduler(self, slot: Slot) -> None:
        leftovers = [p for p in self.stack.processes(slot.name) if processes.role(p).startswith("scheduler")]
        if leftovers:
            processes.stop(leftovers, timeout=3)

    def request_stop(self, signum, frame) -> None:
        self.stopping = True

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.request_stop)
        self.log(f"supervising {len(self.slots)} worker(s), run tag {self.stack.tag}", flush=True)
        try:
            for slot in self.slots:
                if not self.stopping:
                    self.start(slot)
            while not self.stopping:
                time.sleep(0.2)
                for slot in self.slots:
                    self.check(slot)
        finally:
            self.stop_workers()
        return 0

    def stop_workers(self) -> None:
        """SIGTERM to each worker alone (a warm shutdown: it finishes its job), then whatever is left."""
        self.log("stopping the workers (each finishes its job first)", flush=True)
        mains = [p for slot in self.slots for p in self.stack.processes(slot.name) if processes.role(p) == "worker"]
        processes.stop(mains, STOP_TIMEOUT)
        for slot in self.slots:
            self.stack.stop(slot.name, timeout=3)


def run(settings: Settings, count: int | None = None, *, weighted: bool = False, with_scheduler: bool = True) -> int:
    """`ebookstore workers`: supervise `count` workers (default: settings.workers) in the foreground."""
    return Supervisor(settings, count or settings.workers, weighted=weighted,
                      with_scheduler=with_scheduler).run()


if __name__ == "__main__":
    sys.exit(run(Settings.from_env()))
