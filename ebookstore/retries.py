"""Retries: backoff schedules, permanent failures, and a hook for when retries run out.

RQ retries a job only when it was enqueued with `retry=Retry(max=N, interval=[…])`,
and it needs a worker `--with-scheduler` to run a retry after its interval.
RQ has no "do not retry this error"; the store's workers run `discard_permanent`
as an exception handler (see workers.worker_argv): it sets the job's
`retries_left` to 0 before RQ decides, so a PermanentError fails at once.
"""
from __future__ import annotations

import random

from rq import Retry

EXHAUSTED_KEY = "ebookstore:retries-exhausted"  # a Redis list of job ids


class PermanentError(Exception):
    """An error no retry can fix: bad input, a purchase that does not exist."""


def sidekiq_delays(retries: int, rng: random.Random = random) -> list[int]:
    """Sidekiq's default schedule: retry n waits n⁴ + 15 + rand(10)·(n + 1) seconds."""
    return [n ** 4 + 15 + rng.randrange(10) * (n + 1) for n in range(retries)]


def exponential_delays(retries: int, base: float = 1.0, factor: float = 2.0, jitter: float = 0.25,
                       rng: random.Random = random) -> list[int]:
    """base · factor^n seconds for retry n, each shifted by up to ±jitter of itself.

    Jitter spreads retries out: a thousand jobs that failed together (the mail
    provider was down) do not all come back in the same second.
    """
    return [max(1, round(base * factor ** n * (1 + rng.uniform(-jitter, jitter)))) for n in range(retries)]


# The store's policy for its jobs (the emails). The first retry comes at once: a job
# abandoned by a killed worker is retried that way too, so it runs again within seconds
# without waiting for a scheduler (whose lock a killed worker may hold for a minute).
STORE_RETRY = Retry(max=5, interval=[0, 5, 30, 120, 600])


def discard_permanent(job, exc_type, exc_value, traceback) -> bool:
    """Worker exception handler: a PermanentError is not retried; the reason goes into job.meta."""
    if exc_type is not None and issubclass(exc_type, PermanentError):
        job.retries_left = 0  # RQ decides on retries after the exception handlers
        job.meta["permanent_failure"] = str(exc_value)
        job.save_meta()
    return True  # let the next handler (and RQ's bookkeeping) run too


def on_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """Job failure callback (Callback(on_failure)): note the job when no retry is left.

    RQ calls it after every failed attempt, before it decides about retrying,
    so "retries exhausted" means retries_left is 0 (or the job had no retries).
    """
    if not job.retries_left:
        connection.rpush(EXHAUSTED_KEY, job.id)
