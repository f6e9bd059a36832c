"""RQ, Celery and Dramatiq side by side: `python bench/backends.py` (part of `make bench`).

The store's own notification job (1 database read, 3 emails into the Maildir) through the
queue adapter (ebookstore/backends), on one password-protected Redis, each library with its
own worker program and 1 or 2 worker processes: RQ's `rq worker` (a work-horse forked per
job; 2 processes = 2 workers), Celery's prefork pool (`--concurrency N`), Dramatiq's
`--processes N --threads 1`. Workers start before the clock does. Measured: enqueue latency
(the caller's wait, median and p95) and jobs/s from the first enqueue to the last email.
Prints a table, then one JSON line. The helpers are ebookstore/course/measure.py's, shared with notebook 13.
"""
import json
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from ebookstore import queues, store
from ebookstore.config import Settings
from ebookstore.course import measure
from ebookstore.runtime import processes
from ebookstore.runtime.stack import Stack, new_tag

N = 150  # notification jobs per run: 450 emails


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
                measure.start_job_workers(stack, name, count)
                figures[f"{name} ×{count}"] = measure.notification_throughput(stack, conn, name, N, timeout=180)
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
