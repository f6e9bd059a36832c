"""RQ, Celery and Dramatiq side by side: `python bench/backends.py` (part of `make bench`).

The store's own notification job (1 database read, 3 emails into the Maildir) through the
queue adapter (ebookstore/backends), on one password-protected Redis, each library with its
own worker program and 1 or 2 worker processes: RQ's `rq worker` (a work-horse forked per
job; 2 processes = 2 workers), Celery's prefork pool (`--concurrency N`), Dramatiq's
`--processes N --threads 1`. Workers start before the clock does. Measured: enqueue latency
(the caller's wait, median and p95) and jobs/s from the first enqueue to the last email.
Prints a table, then one JSON line.
"""
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from ebookstore import backends, jobs, mail, queues, store
from ebookstore.config import Settings
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until
from ebookstore.runtime.stack import Stack, new_tag

N = 150  # notification jobs per run: 450 emails


def start_workers(stack: Stack, name: str, count: int) -> None:
    settings = stack.settings
    if name == "rq":
        for i in range(count):
            stack.worker(f"rq-{count}-{i}", wait_ready=True)
        return
    label = f"{name}-{count}"
    stack.start(label, backends.worker_argv(settings, count, f"{stack.tag}.{label}"), timeout=60,
                ready=lambda: backends.ready_in_log(name, stack.log_path(label).read_text(errors="replace"), count))


def delivered(settings) -> int:
    """Emails in the Maildir, counted without reading them (the bench must not compete for the CPU it measures)."""
    return sum(len(os.listdir(settings.maildir / sub)) for sub in ("new", "cur"))


def run(stack: Stack, conn, name: str, count: int) -> dict:
    backend = backends.get(stack.settings)
    ids = [store.buy(conn, 1 + i % 2, 1 + i % 4)["id"] for i in range(N)]
    conn.commit()
    mail.maildir(stack.settings)
    before = delivered(stack.settings)
    latencies, started = [], time.perf_counter()
    for purchase_id in ids:
        t = time.perf_counter()
        backend.enqueue_one(jobs.purchase_notification, purchase_id)
        latencies.append((time.perf_counter() - t) * 1000)
    wait_until(lambda: delivered(stack.settings) - before >= 3 * N, 180, interval=0.05,
               what=f"{name}'s emails")
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"enqueue_p50_ms": round(statistics.median(latencies), 2),
            "enqueue_p95_ms": round(latencies[int(0.95 * len(latencies)) - 1], 2),
            "jobs_per_s": round(N / elapsed, 1)}


def main() -> dict:
    home = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    base = Settings.from_env(home=home, redis_port=processes.free_port(), external_redis_url=None,
                             smtp_url=None, mail_delay=0.0)
    figures = {}
    for name in ("rq", "celery", "dramatiq"):
        for count in (1, 2):
            settings = base.replace(queue_backend=name)
            with Stack(settings, tag=new_tag("bench")) as stack, closing(store.connect(settings.database_path)) as conn:
                stack.redis()
                queues.connect(settings).ping()
                start_workers(stack, name, count)
                figures[f"{name} ×{count}"] = run(stack, conn, name, count)
    print(f"queue libraries, the notification job ({N} per run, 3 emails each into the Maildir), one Redis")
    print(f"{'library, processes':<22}{'enqueue p50':>12}{'p95':>9}{'jobs/s':>9}")
    for label, f in figures.items():
        print(f"{label:<22}{f['enqueue_p50_ms']:>9.2f} ms{f['enqueue_p95_ms']:>6.2f} ms{f['jobs_per_s']:>9.1f}")
    result = {"bench": "backends", "n": N, "figures": figures}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
