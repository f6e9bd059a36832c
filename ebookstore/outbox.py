"""The transactional outbox: jobs recorded in the database with the purchase, enqueued after.

`record()` runs inside the purchase's transaction, so a committed purchase always
has its jobs written down. `relay()` enqueues pending ones into Redis and marks
them; the relay process (`ebookstore relay`) calls it every half second, so jobs
recorded while Redis was down are enqueued once it is back. A job marks its row
complete when done; `rescue_lost()` re-enqueues jobs that RQ lost on the way. A job may be
enqueued twice (the web app and the relay racing): job ids are fixed per purchase
and the jobs are idempotent, so that costs nothing but a second, empty run.
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import closing

from redis.exceptions import RedisError
from rq import Queue

from . import queues, retries, store
from .config import Settings

log = logging.getLogger(__name__)


def record(conn, job_id: str, func: str, args: list, queue: str) -> None:
    """Write a job to enqueue (call inside the transaction that makes it necessary)."""
    conn.execute(
        "INSERT OR IGNORE INTO outbox (job_id, func, args, queue, created_at) VALUES (?, ?, ?, ?, ?)",
        (job_id, func, json.dumps(args), queue, store.now_iso()),
    )


def pending(conn, limit: int = 500) -> list[dict]:
    rows = conn.execute("SELECT * FROM outbox WHERE enqueued_at IS NULL ORDER BY id LIMIT ?", (limit,))
    return [dict(row) for row in rows]


def relay(conn, connection, job_ids: list[str] | None = None, retry=None) -> int:
    """Enqueue pending outbox jobs (only `job_ids`, if given) in one round trip; return how many.

    Raises RedisError if Redis is unreachable; the jobs then stay pending.
    """
    rows = [r for r in pending(conn) if job_ids is None or r["job_id"] in job_ids]
    if not rows:
        return 0
    with connection.pipeline() as pipe:
        for row in rows:
            queue = queues.get_queue(row["queue"], connection)
            data = Queue.prepare_data(row["func"], args=tuple(json.loads(row["args"])), job_id=row["job_id"],
                                      description=f"{row['func'].rsplit('.', 1)[-1]}{tuple(json.loads(row['args']))}",
                                      retry=retry)
            queue.enqueue_many([data], pipeline=pipe)
        pipe.execute()
    with store.transaction(conn):
        conn.executemany("UPDATE outbox SET enqueued_at = ? WHERE job_id = ?",
                         [(store.now_iso(), row["job_id"]) for row in rows])
    return len(rows)


def complete(conn, job_id: str) -> None:
    """Mark an outbox job done (the job calls this when its work is finished)."""
    conn.execute("UPDATE outbox SET completed_at = ? WHERE job_id = ?", (store.now_iso(), job_id))


def rescue_lost(conn, connection, grace: float = 5.0, limit: int = 200) -> int:
    """Put jobs that RQ lost back into the outbox's pending list; return how many.

    A worker that reads several queues pops a job with BLPOP and only then
    marks it started. Killed in between, the job is in no queue and no
    registry, still "queued", and nothing in RQ will ever run it. The outbox
    knows it was enqueued and not completed: if, `grace` seconds after it was
    enqueued, its job is queued but in no queue (or gone altogether), it is
    enqueued again.
    """
    cutoff = store.iso(time.time() - grace)
    rows = conn.execute("SELECT job_id, queue FROM outbox WHERE enqueued_at IS NOT NULL AND completed_at IS NULL "
                        "AND enqueued_at < ? ORDER BY id LIMIT ?", (cutoff, limit)).fetchall()
    lost = []
    for job_id, queue_name in rows:
        queue = queues.get_queue(queue_name, connection)
        status = connection.hget(f"rq:job:{job_id}", "status")
        if status is None:
            lost.append(job_id)  # the job's data is gone
        elif status == b"queued" and connection.lpos(queue.key, job_id) is None \
                and connection.lpos(queue.intermediate_queue.key, job_id) is None:
            lost.append(job_id)
    if lost:
        log.warning("re-enqueueing %d job(s) lost by killed workers: %s", len(lost), lost[:5])
        with store.transaction(conn):
            conn.executemany("UPDATE outbox SET enqueued_at = NULL WHERE job_id = ?", [(j,) for j in lost])
    return len(lost)


def run(settings: Settings | None = None, interval: float = 0.5) -> None:
    """The relay process: enqueue pending jobs every `interval` seconds, until SIGTERM."""
    settings = settings or Settings.from_env()
    connection = queues.connect(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s relay: %(message)s", datefmt="%H:%M:%S")
    log.info("watching %s for pending jobs", settings.database_path)
    with closing(store.connect(settings.database_path)) as conn:
        while True:
            try:
                rescue_lost(conn, connection)
                count = relay(conn, connection, retry=retries.STORE_RETRY)
                if count:
                    log.info("enqueued %d pending job(s)", count)
            except RedisError as error:
                log.warning("Redis unavailable (%s); will retry", error)
            time.sleep(interval)
