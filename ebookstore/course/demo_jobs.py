"""Small jobs the notebooks use to show how RQ behaves (the store's real jobs are in jobs.py).

They live in a module, not in a notebook, because a worker imports a job's
function by its dotted name: `ebookstore.course.demo_jobs.nap`.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import closing

from ebookstore import mail, store
from ebookstore.config import Settings
from ebookstore.retries import PermanentError


def nap(seconds: float) -> float:
    """Sleep, then return how long: a stand-in for slow work."""
    time.sleep(seconds)
    return seconds


def spin(seconds: float) -> int:
    """Keep the CPU busy for `seconds` (a process in state R); return the loop count."""
    deadline, count = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        count += 1
    return count


def describe_ebook(ebook: dict) -> str:
    """The anti-pattern: the job gets a copy of the ebook, frozen at enqueue time."""
    return f"{ebook['title']}: {mail.money(ebook['price_cents'])}"


def describe_ebook_by_id(ebook_id: int) -> str:
    """The fix: the job gets an id and reads the ebook when it runs."""
    with closing(store.connect(Settings.from_env().database_path)) as conn:
        ebook = next(e for e in store.ebooks(conn) if e["id"] == ebook_id)
    return describe_ebook(ebook)


def flaky(key: str, failures: int) -> str:
    """Fail the first `failures` times it runs for `key`, then succeed.

    Each attempt appends its time to $EBOOKSTORE_HOME/flaky/KEY, so the attempts can be counted and timed.
    """
    record = Settings.from_env().home / "flaky" / key
    record.parent.mkdir(parents=True, exist_ok=True)
    with open(record, "a") as log:
        log.write(f"{time.time()}\n")
    attempt = len(attempts(key))
    if attempt <= failures:
        raise ConnectionError(f"mail provider unreachable (attempt {attempt})")
    return f"succeeded on attempt {attempt}"


def attempts(key: str) -> list[float]:
    """The times (Unix seconds) at which flaky(key, …) ran."""
    record = Settings.from_env().home / "flaky" / key
    return [float(line) for line in record.read_text().split()] if record.exists() else []


def reject(reason: str) -> None:
    """Fail for good: retrying cannot help (a PermanentError)."""
    raise PermanentError(reason)


def who_am_i() -> dict:
    """The PID and process group of the process running the job (the work-horse)."""
    return {"pid": os.getpid(), "pgid": os.getpgid(0), "parent": os.getppid(),
            "sigterm_handler": str(signal.getsignal(signal.SIGTERM))}


class PurchaseMissing(PermanentError):
    """A kind of PermanentError (the check of exercise 10 raises it: a subclass is permanent too)."""


def reject_missing(purchase_id: int) -> None:
    """Fail for good with a subclass of PermanentError: the purchase does not exist."""
    raise PurchaseMissing(f"purchase {purchase_id} does not exist")


def arguments_as_received(*args) -> list:
    """What the job was given: [type name, value] of each argument (from a queue, JSON: a tuple arrives as a list)."""
    return [[type(arg).__name__, arg] for arg in args]


def count_run(name: str, delay: float = 0.0) -> int:
    """After `delay` seconds, note one run of job `name` (the PID of the process that ran it, in the state
    folder); how many runs so far."""
    time.sleep(delay)
    record = Settings.from_env().home / "runs" / name
    record.parent.mkdir(parents=True, exist_ok=True)
    with open(record, "a") as out:
        out.write(f"{os.getpid()}\n")
    return len(runs(name))


def note_arguments(name: str, *args) -> list:
    """Note one run of job `name` (as count_run does); what arguments_as_received returns."""
    count_run(name)
    return arguments_as_received(*args)


def runs(name: str) -> list[int]:
    """The PIDs of the processes that ran count_run(name), in order."""
    record = Settings.from_env().home / "runs" / name
    return [int(pid) for pid in record.read_text().split()] if record.exists() else []


class JobFailed(Exception):
    """The error fail() raises: a job's own exception."""


def fail(message: str) -> None:
    """A job that fails with JobFailed(message)."""
    raise JobFailed(message)
