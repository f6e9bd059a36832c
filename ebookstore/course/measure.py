"""Measuring the store: purchase latency over HTTP, Redis round trips, percentiles, the job libraries' throughput.

Used by notebooks 01 and 13 and by `make bench` (bench/latency.py, bench/backends.py), so both measure the same way.
"""
from __future__ import annotations

import json
import os
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from ebookstore import backends, jobs, mail, queues, store
from ebookstore.runtime import processes

LIBRARIES = ("rq", "celery", "dramatiq")  # the backends with worker programs of their own (not `inline`)
MEASURE_QUEUE = "measure"  # RQ's workers under measurement also read this queue; `ebookstore up`'s don't


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0–100) of `values`, interpolated."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summary(values_ms: list[float]) -> dict:
    return {"n": len(values_ms), "p50_ms": round(percentile(values_ms, 50), 2),
            "p95_ms": round(percentile(values_ms, 95), 2), "mean_ms": round(statistics.fmean(values_ms), 2)}


def timed_purchase(web_url: str, buyer_id: int, ebook_id: int) -> float:
    """POST one purchase to the store's API; return the response time in ms (raises unless 201)."""
    body = json.dumps({"buyer_id": buyer_id, "ebook_id": ebook_id}).encode()
    request = urllib.request.Request(f"{web_url}/api/purchases", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        if response.status != 201:
            raise RuntimeError(f"purchase answered {response.status}")
    return (time.perf_counter() - started) * 1000


def purchase_latencies(web_url: str, n: int, concurrency: int = 1) -> list[float]:
    """Response times (ms) of `n` purchases, `concurrency` clients at a time."""
    pairs = [(1 + i % 2, 1 + i % 4) for i in range(n)]  # users 1 and 2 buy the four ebooks in turn
    if concurrency == 1:
        return [timed_purchase(web_url, b, e) for b, e in pairs]
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda pair: timed_purchase(web_url, *pair), pairs))


@contextmanager
def counting_round_trips(connection):
    """Count the requests `connection` sends to Redis (a pipeline is one) inside the block: yields a list."""
    connection_class = connection.connection_pool.connection_class
    real = connection_class.send_packed_command
    sent: list = []

    def counting(self, command, check_health=True):
        sent.append(command)
        return real(self, command, check_health)

    connection_class.send_packed_command = counting
    try:
        yield sent
    finally:
        connection_class.send_packed_command = real


def start_job_workers(stack, backend: str, count: int, env: dict | None = None, name: str | None = None,
                      alone: bool = False) -> list[str]:
    """Start `backend`'s own worker program with `count` worker processes in `stack`; their names, once all take jobs.

    RQ: `count` `rq worker`s (each forks a work-horse per job) on the store's queues and MEASURE_QUEUE.
    Celery: one `celery worker` whose prefork pool has `count` processes. Dramatiq: `--processes count`.
    Named `name` (default: backend-count; RQ's: name-0, name-1, …); a set-up already running is given back,
    unless it was told to stop (it takes no new job): that one is waited for, then started afresh.
    `alone`: first stop every set-up of this backend started here in `stack` (running, or told to stop and
    still finishing), so that the one started takes the backend's jobs alone, afresh.
    """
    if alone:
        stop_job_workers(stack, set_ups(stack, backend))
    settings = stack.settings.replace(queue_backend=backend)
    env = {**settings.to_env(), **(env or {})}  # the workers' own jobs enqueue through their backend
    name = name or f"{backend}-{count}"
    names = [f"{name}-{i}" for i in range(count)] if backend == "rq" else [name]
    stop_job_workers(stack, [n for n in names if stopping(stack, n)])  # a cell run again soon after a stop
    _started.setdefault((stack.tag, backend), {}).update(dict.fromkeys(names))
    if backend == "rq":
        for worker in names:
            stack.worker(worker, [MEASURE_QUEUE, *queues.load_config().names], env=env, wait_ready=True)
        return names
    stack.start(names[0], backends.worker_argv(settings, count, f"{stack.tag}.{names[0]}"), env=env, timeout=60,
                ready=lambda: backends.ready_in_log(backend, stack.log(names[0], 1000), count))  # this start's lines
    return names


_started: dict[tuple[str, str], dict[str, None]] = {}  # (run tag, backend) -> names start_job_workers gave
_told: set = set()  # processes stop_job_workers sent SIGTERM: a second one would end a job midway (RQ, Dramatiq)


def set_ups(stack, backend: str | None = None) -> list[str]:
    """The names of the set-ups start_job_workers started in `stack` (of `backend`; default: of every backend)."""
    return [name for (tag, of), names in _started.items() if tag == stack.tag and backend in (None, of)
            for name in names]


def stopping(stack, name: str) -> bool:
    """Whether set-up `name` still runs but was told to stop (its warm shutdown goes on: it takes no new job)."""
    process = stack.running(name)
    return process is not None and process in _told


def stop_job_workers(stack, names: list[str], wait: bool = True, timeout: float = 10) -> None:
    """Tell the running set-ups among `names` to stop (SIGTERM, once), all at once, so that their warm shutdowns
    (seconds, for Celery and Dramatiq) go on side by side; then, if `wait`, wait up to `timeout` s for each
    (what is left then is stopped by the Stack: SIGTERM, SIGKILL)."""
    for name in names:
        process = stack.running(name)
        if process is not None and process not in _told:  # psutil compares PID and start time
            process.terminate()
            _told.add(process)
    if wait:
        for name in names:
            process = stack.running(name)
            if process is not None:
                processes.wait_gone([process], timeout)
                stack.stop(name)  # reaps it, and stops what is left of it (SIGTERM, then SIGKILL)


def notification_throughput(stack, conn, backend: str, count: int, timeout: float = 120) -> dict:
    """`count` purchases' notification jobs through `backend`'s adapter, as the web app enqueues them.

    Measured: each enqueue (the caller's wait, ms: median and 95th percentile) and jobs/s from the first
    enqueue until the last of their 3 × `count` emails is in the Maildir (counted, not read: the counting
    must not take the CPU it measures).
    """
    adapter = backends.get(stack.settings.replace(queue_backend=backend))
    queue = MEASURE_QUEUE if backend == "rq" else None
    ids = [store.buy(conn, 1 + i % 2, 1 + i % 4)["id"] for i in range(count)]
    conn.commit()
    mail.maildir(stack.settings)  # created if missing: the loop below only counts
    before = maildir_count(stack.settings)
    latencies, started = [], time.perf_counter()
    for purchase_id in ids:
        t = time.perf_counter()
        adapter.enqueue_one(jobs.purchase_notification, purchase_id, queue=queue)
        latencies.append((time.perf_counter() - t) * 1000)
    deadline = time.monotonic() + timeout
    while maildir_count(stack.settings) - before < 3 * count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{backend}: {maildir_count(stack.settings) - before} of {3 * count} emails "
                               f"after {timeout:g} s")
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    return {"enqueue_p50_ms": round(percentile(latencies, 50), 2), "enqueue_p95_ms": round(percentile(latencies, 95), 2),
            "jobs_per_s": round(count / elapsed, 1)}


def maildir_count(settings) -> int:
    """Emails in the store's Maildir (which must exist: see mail.maildir)."""
    return sum(len(os.listdir(settings.maildir / sub)) for sub in ("new", "cur"))
