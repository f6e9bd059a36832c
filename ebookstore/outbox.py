"""The transactional outbox: jobs recorded in the database with the purchase, enqueued after.

`record()` runs inside the purchase's transaction, so a committed purchase always
has its jobs written down. `relay()` enqueues pending ones into Redis and marks
them; the relay process (`ebookstore relay`) calls it every half second, so jobs
recorded while Redis was down are enqueued once it is back. A job marks its row
complete when done; `rescue_lost()` re-enqueues jobs that RQ lost on the way. The relay
claims the rows it enqueues in a transaction and leaves rows younger than a few seconds to
the web app, so the two do not both enqueue a job; should a job still run twice, its emails
are claimed one by one before they are sent (claims.py), so nothing is sent twice.
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import closing

from redis.exceptions import RedisError

from . import backends, queues, retries, store
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


YOUNG = 3.0  # seconds: a pending row younger than this is the web app's, which enqueues it right after COMMIT


def hand_over(conn, job_id: str) -> None:
    """The purchase's request could not enqueue `job_id` (Redis down) and leaves it: the relay takes it at
    once, however young, instead of waiting YOUNG s for a request that has given up."""
    conn.execute("UPDATE outbox SET handed_over_at = ? WHERE job_id = ? AND enqueued_at IS NULL",
                 (store.now_iso(), job_id))


def claim_pending(conn, job_ids: list[str] | None = None, min_age: float = YOUNG, limit: int = 500) -> list[dict]:
    """Take pending rows older than `min_age` s for enqueueing: marked enqueued in the same transaction.

    Two relays (or a relay and a web app) therefore never enqueue the same row. A row younger
    than `min_age` is left alone: its purchase's request is about to enqueue it itself — unless the
    request handed it over (hand_over: it found Redis down).
    """
    cutoff = store.iso(time.time() - min_age)
    with store.transaction(conn):
        rows = [dict(r) for r in conn.execute(
            "SELECT * FROM outbox WHERE enqueued_at IS NULL AND (created_at <= ? OR handed_over_at IS NOT NULL) "
            "ORDER BY id LIMIT ?", (cutoff, limit))
            if job_ids is None or r["job_id"] in job_ids]
        conn.executemany("UPDATE outbox SET enqueued_at = ? WHERE job_id = ? AND enqueued_at IS NULL",
                         [(store.now_iso(), row["job_id"]) for row in rows])
    return rows


def mark_enqueued(conn, job_id: str) -> bool:
    """The web app enqueued `job_id` itself: mark its row (False if the relay had claimed it first)."""
    with store.transaction(conn):
        return conn.execute("UPDATE outbox SET enqueued_at = ? WHERE job_id = ? AND enqueued_at IS NULL",
                            (store.now_iso(), job_id)).rowcount == 1


def relay(conn, connection, job_ids: list[str] | None = None, retry=None, min_age: float = YOUNG,
          backend=None) -> int:
    """Enqueue pending outbox jobs older than `min_age` s (only `job_ids`, if given); on RQ in one round trip.

    `backend`: the queue adapter's (default: EBOOKSTORE_QUEUE_BACKEND's, on `connection` for RQ).
    Returns how many. Raises RedisError if Redis is unreachable; the jobs are then pending again.
    """
    rows = claim_pending(conn, job_ids, min_age)
    if not rows:
        return 0
    backend = backend or backends.get(connection=connection)
    try:
        backend.enqueue([backends.Call(row["func"], tuple(json.loads(row["args"])), job_id=row["job_id"],
                                       queue=row["queue"], retry=retry) for row in rows])
    except BaseException:
        with store.transaction(conn):  # not enqueued after all: pending again, for the next round
            conn.executemany("UPDATE outbox SET enqueued_at = NULL WHERE job_id = ?", [(r["job_id"],) for r in rows])
        raise
    return len(rows)


def complete(conn, job_id: str) -> None:
    """Mark an outbox job done (the job calls this when its work is finished)."""
    conn.execute("UPDATE outbox SET completed_at = ? WHERE job_id = ?", (store.now_iso(), job_id))


# Where a job is, in one step on the Redis server (a script runs atomically: no worker can take
# the job between two of its reads). "lost:…" = status queued, yet in neither the queue nor the
# intermediate queue; it ends with the job's enqueued_at, so a re-enqueue in between shows.
_WHERE_IS = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'gone' end
if status ~= 'queued' then return status end
if redis.call('LPOS', KEYS[2], ARGV[1]) or redis.call('LPOS', KEYS[3], ARGV[1]) then return 'waiting' end
return 'lost:' .. (redis.call('HGET', KEYS[1], 'enqueued_at') or '')
"""

_suspects: dict[str, tuple[float, str]] = {}  # job id -> (when first seen lost, what was seen)


def where_is(connection, job_id: str, queue_name: str) -> str:
    """'gone', 'waiting', a status (started, finished …) or 'lost:…', read atomically."""
    queue = queues.get_queue(queue_name, connection)
    answer = connection.eval(_WHERE_IS, 3, f"rq:job:{job_id}", queue.key, queue.intermediate_queue.key, job_id)
    return answer.decode() if isinstance(answer, bytes) else str(answer)


def rescue_lost(conn, connection, grace: float = 5.0, limit: int = 200, confirm_after: float = 2.0,
                suspects: dict | None = None) -> int:
    """Put jobs that RQ lost back into the outbox's pending list; return how many.

    A worker that reads several queues pops a job with BLPOP and only then
    marks it started. Killed in between, the job is in no queue and no
    registry, still "queued", and nothing in RQ will ever run it. The outbox
    knows it was enqueued and not completed: if, `grace` seconds after it was
    enqueued, its job is queued but in no queue (or gone altogether), it may be lost.

    A live worker passes through that same state for a few milliseconds, between
    BLPOP and "started". So a job counts as lost only if it looks lost twice —
    each look one atomic script — `confirm_after` seconds apart, with its own state
    (status, enqueued_at) unchanged in between. Then it is enqueued again.
    """
    suspects = _suspects if suspects is None else suspects
    cutoff = store.iso(time.time() - grace)
    rows = conn.execute("SELECT job_id, queue FROM outbox WHERE enqueued_at IS NOT NULL AND completed_at IS NULL "
                        "AND enqueued_at < ? ORDER BY id LIMIT ?", (cutoff, limit)).fetchall()
    now, lost, seen = time.monotonic(), [], set()
    for job_id, queue_name in rows:
        state = where_is(connection, job_id, queue_name)
        if state != "gone" and not state.startswith("lost:"):
            continue
        seen.add(job_id)
        first = suspects.setdefault(job_id, (now, state))
        if first[1] != state:
            suspects[job_id] = (now, state)  # it moved in between: look again later
        elif now - first[0] >= confirm_after:
            lost.append(job_id)
    for job_id in set(suspects) - seen:
        del suspects[job_id]  # no longer suspect: it was only passing through
    if lost:
        log.warning("re-enqueueing %d job(s) lost by killed workers: %s", len(lost), lost[:5])
        with store.transaction(conn):
            conn.executemany("UPDATE outbox SET enqueued_at = NULL WHERE job_id = ?", [(j,) for j in lost])
        for job_id in lost:
            suspects.pop(job_id, None)
    return len(lost)


def run(settings: Settings | None = None, interval: float = 0.5) -> None:
    """The relay process: enqueue pending jobs every `interval` seconds, until SIGTERM.

    On RQ it also rescues jobs that RQ lost (rescue_lost); Celery and Dramatiq bring back a killed
    worker's messages themselves (late acknowledgement), and the inline backend runs each job here.
    """
    settings = settings or Settings.from_env()
    connection = queues.connect(settings)
    backend = backends.get(settings, connection)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s relay: %(message)s", datefmt="%H:%M:%S")
    log.info("watching %s for pending jobs (queue backend: %s)", settings.database_path, backend.name)
    with closing(store.connect(settings.database_path)) as conn:
        while True:
            try:
                if backend.name == "rq":
                    rescue_lost(conn, connection)
                count = relay(conn, connection, retry=retries.STORE_RETRY, backend=backend)
                if count:
                    log.info("enqueued %d pending job(s)", count)
            except RedisError as error:
                log.warning("Redis unavailable (%s); will retry", error)
            except Exception:  # the inline backend runs jobs here: one that fails is pending again
                log.exception("enqueueing failed; will retry")
            time.sleep(interval)
