"""Exercise 10 — errors and retries: retry temporary failures, discard permanent ones, notice exhaustion.

Notebook: notebooks/10_errors_and_retries.ipynb · check: check("ex10") or `ebookstore check ex10`
"""
from rq import Callback, Queue, Retry
from rq.job import Job

from ebookstore.retries import PermanentError

EXHAUSTED_KEY = "ex10:exhausted"  # the Redis list your hook appends job ids to


def retry_policy() -> Retry:
    """Retry up to 3 times, waiting 1 s, then 2 s, then 4 s (exponential backoff)."""
    raise NotImplementedError  # your code here


def enqueue_flaky(queue: Queue, key: str, failures: int) -> Job:
    """Enqueue ebookstore.course.demo_jobs.flaky(key, failures) with your retry policy and your exhausted hook.

    flaky fails (ConnectionError) its first `failures` runs, then succeeds.
    Attach `when_exhausted` as the job's failure callback (rq.Callback).
    """
    raise NotImplementedError  # your code here


def discard_permanent(job: Job, exc_type, exc_value, traceback) -> bool:
    """A worker exception handler: a PermanentError must not be retried.

    RQ calls exception handlers after a failed attempt and decides about
    retrying afterwards, from job.retries_left. Record the reason in
    job.meta["permanent_failure"] (and save it). Return True so the next
    handlers run too.
    """
    raise NotImplementedError  # your code here


def when_exhausted(job: Job, connection, exc_type, exc_value, traceback) -> None:
    """A job failure callback: append job.id to the Redis list EXHAUSTED_KEY once no retry is left.

    RQ calls it after every failed attempt, before the retry decision: a job
    with retries left will run again; only one with none left (0 or None) is done for.
    """
    raise NotImplementedError  # your code here
