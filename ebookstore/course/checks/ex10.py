"""Checks of exercise 10: a retry policy, retries that happen, permanent failures, the exhausted hook.

The backoff is read from the job RQ saved (the interval RQ will wait before its first retry), not timed
between the attempts: RQ schedules a retry in whole seconds (the registry's score is int(now + interval)),
so a correct 1-s backoff can bring the retry less than 1 s after the first attempt (0.87 s was seen, and a
check that timed it rejected a correct answer).
"""
import secrets

from rq import Retry
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from ebookstore import queues
from ebookstore.course import forked_worker
from ebookstore.course.checks.common import Fail, job_outcome, run_worker
from ebookstore.retries import PermanentError
from ebookstore.runtime.processes import wait_until


def has_a_backoff_policy(ctx):
    """retry_policy: 3 retries, after 1, 2 and 4 s"""
    retry = ctx.learner("retry_policy")()
    if not isinstance(retry, Retry):
        raise Fail("return an rq.Retry")
    if retry.max != 3 or list(retry.intervals) != [1, 2, 4]:
        raise Fail(f"got Retry(max={retry.max}, interval={retry.intervals}); each wait doubles: 1, 2, 4")


def retries_a_temporary_failure(ctx):
    """a job that fails once is retried after about 1 s, and succeeds"""
    key = secrets.token_hex(4)
    low = queues.get_queue("low", ctx.redis)  # not "default": the queue given is the one to use
    enqueue_flaky = ctx.learner("enqueue_flaky")
    job = enqueue_flaky(low, key, 1)
    if job is None or not hasattr(job, "retries_left"):
        raise Fail("return the Job that enqueue gave you")
    if job.origin != "low":
        raise Fail(f"enqueue_flaky was given the queue 'low' and put the job on {job.origin!r}: enqueue on the "
                   "queue you are given")
    if job.retries_left != 3:
        raise Fail(f"the job has {job.retries_left or 0} retries: enqueue it with retry=retry_policy()")
    first_wait = job.get_retry_interval()  # RQ's own choice for the first retry (it reads the list from the end)
    if first_wait < 1:
        raise Fail(f"the job's first retry has no backoff (intervals {job.retry_intervals}): a mail provider that is "
                   "down needs time to come back. Wait 1 s before the first retry: enqueue it with retry=retry_policy()")
    if getattr(job.failure_callback, "__name__", None) != "when_exhausted":
        raise Fail("attach when_exhausted with on_failure=Callback(when_exhausted)")
    sound = enqueue_flaky(low, secrets.token_hex(4), 0)  # one that never fails
    # The scheduler runs retries when due. Timed from the worker's start-up, not from its launch: on a busy
    # machine (a class grading at once) starting Python alone can take seconds.
    worker = forked_worker.start(ctx.stack, "worker", ["low"], with_scheduler=True, wait_ready=True)
    try:
        _succeeds_on_its_retry(ctx, job, sound)
    finally:  # done with the worker, whatever the verdict: no need to wait for its warm shutdown
        forked_worker.stop(worker, timeout=0.05)


def _succeeds_on_its_retry(ctx, job, sound) -> None:
    # A retry takes ~2 s on an idle machine; a busy one's is waited for as long as the check may take, not judged.
    patience = max(2.0, ctx.seconds_left())
    try:
        wait_until(lambda: job.get_status(refresh=True) in ("finished", "failed"), patience, interval=0.05,
                   what="the retry")
    except TimeoutError:
        raise Fail(f"{patience:.0f} s after the worker started, {_outcome(ctx, job)}") from None
    if job.get_status() == "failed":
        raise Fail(f"once its retries were spent, {_outcome(ctx, job)}")
    if job.return_value() != "succeeded on attempt 2":
        raise Fail(f"the job returned {job.return_value()!r}, expected success on its second attempt")
    if sound.get_status(refresh=True) != "finished" or sound.return_value() != "succeeded on attempt 1":
        raise Fail(f"enqueue_flaky(queue, key, 0) should never fail, yet {job_outcome(sound)}: pass flaky the "
                   "`failures` you are given")


def _outcome(ctx, job) -> str:
    return job_outcome(job, ctx.stack.log("worker", 200))


def discards_permanent_failures(ctx):
    """a PermanentError is not retried; the reason is kept; other errors are retried"""
    default = queues.get_queue("default", ctx.redis)
    permanent = default.enqueue("ebookstore.course.demo_jobs.reject", "purchase 7 does not exist",
                                retry=Retry(max=3, interval=60))
    subclass = default.enqueue("ebookstore.course.demo_jobs.reject_missing", 8, retry=Retry(max=3, interval=60))
    temporary = default.enqueue("ebookstore.course.demo_jobs.flaky", secrets.token_hex(4), 5, retry=Retry(max=3, interval=60))
    handler = f"{ctx.module.__name__}.discard_permanent"
    run_worker(ctx, "worker", ["default"], exception_handler=handler)
    failed, scheduled = FailedJobRegistry(queue=default), ScheduledJobRegistry(queue=default)
    permanent.refresh()
    if permanent.id in scheduled.get_job_ids() or permanent.id not in failed.get_job_ids():
        raise Fail("the PermanentError job was scheduled for a retry; set job.retries_left = 0 in the handler")
    reason = permanent.meta.get("permanent_failure")
    if not isinstance(reason, str) or "purchase 7 does not exist" not in reason:
        raise Fail(f"job.meta['permanent_failure'] is {reason!r}: store the reason (the error's message, "
                   "str(exc_value)) and call job.save_meta()")
    if subclass.id in scheduled.get_job_ids() or subclass.id not in failed.get_job_ids():
        raise Fail("a job that raised a subclass of PermanentError was scheduled for a retry: it is a PermanentError "
                   "too (issubclass or isinstance, not `is`)")
    if temporary.id not in scheduled.get_job_ids():
        raise Fail("a ConnectionError (temporary) job was not retried: only PermanentError is discarded")
    temporary.refresh()
    if "permanent_failure" in temporary.meta:
        raise Fail("a ConnectionError (temporary) job got a job.meta['permanent_failure']: record a reason only "
                   "for a PermanentError, a temporary failure is not permanent")
    for error in (ConnectionError("mail provider unreachable"), PermanentError("purchase 9 does not exist")):
        job = Job.create("ebookstore.course.demo_jobs.nap", args=(0,), connection=ctx.redis,
                         serializer=queues.SERIALIZER)
        job.save()
        if ctx.learner("discard_permanent")(job, type(error), error, None) is False:
            raise Fail(f"discard_permanent returned False for a {type(error).__name__}: that stops the next "
                       "exception handlers (RQ's own bookkeeping among them). Return True")


def notices_exhausted_retries(ctx):
    """when_exhausted notes a job only when no retry is left"""
    when_exhausted = ctx.learner("when_exhausted")
    key = getattr(ctx.module, "EXHAUSTED_KEY", "ex10:exhausted")
    noted, ids = [], []
    for retries_left in (2, 0, None):
        job = Job.create("ebookstore.course.demo_jobs.nap", args=(0,), connection=ctx.redis, serializer=queues.SERIALIZER)
        job.retries_left = retries_left
        ids.append(job.id)
        when_exhausted(job, ctx.redis, ConnectionError, ConnectionError("down"), None)
        noted.append(job.id.encode() in ctx.redis.lrange(key, 0, -1))
    if noted[0]:
        raise Fail("a job with 2 retries left is not exhausted: it will run again")
    if not (noted[1] and noted[2]):
        raise Fail(f"a job with retries_left 0 or None is exhausted: rpush its id to {key!r}")
    if ctx.redis.lrange(key, 0, -1) != [job_id.encode() for job_id in ids[1:]]:
        raise Fail(f"after two exhausted jobs, {key!r} holds {[i.decode() for i in ctx.redis.lrange(key, 0, -1)]}; "
                   f"expected {ids[1:]}: append each id once, at the end of the list (rpush)")


CHECKS = [has_a_backoff_policy, retries_a_temporary_failure, discards_permanent_failures, notices_exhausted_retries]
