"""Checks of exercise 13: the inline backend, run_inline(job, args), in the grader's own process and with no Redis.

The jobs are the course's demo jobs (ebookstore.course.demo_jobs), named by import path as a queue
names them; one notes the PID of the process that ran it, one reports the arguments it got.
"""
import datetime
import os
import time

from redis.exceptions import RedisError

from ebookstore.course import demo_jobs
from ebookstore.course.checks.common import Fail, short
from ebookstore.runtime import processes

JOBS = demo_jobs.__name__


def _unique(what: str) -> str:
    return f"{what}-{os.getpid()}-{time.monotonic_ns()}"


def _call(ctx, job, args):
    """run_inline(job, args); a Fail that says what it raised (NotImplementedError passes: the grader says it)."""
    try:
        return ctx.learner("run_inline")(job, args)
    except (NotImplementedError, Fail):
        raise
    except (RedisError, ConnectionError) as error:
        raise Fail(f"run_inline({job!r}, …) tried to reach Redis ({type(error).__name__}: {short(error, 80)}): the "
                   "inline backend needs no Redis, no queue and no worker: call the job function itself") from None
    except Exception as error:
        raise Fail(f"run_inline({job!r}, {args!r}) raised {type(error).__name__}: {short(error, 100)}. The path is "
                   "\"package.module.function\": import the module (everything before the last dot), then take "
                   "the function from it") from None


def runs_the_job_named_by_its_path(ctx):
    """run_inline runs the job its import path names and returns what the job returns"""
    cases = [(f"{JOBS}.arguments_as_received", [7, "seven"], [["int", 7], ["str", "seven"]]),
             ("os.path.join", ["books", "ebook.pdf"], os.path.join("books", "ebook.pdf")),
             ("json.dumps", [{"ebook_id": 3}], '{"ebook_id": 3}')]
    for job, args, expected in cases:
        got = _call(ctx, job, args)
        if got != expected:
            raise Fail(f"run_inline({job!r}, {args!r}) returned {got!r}; the job returns {expected!r}: "
                       "return what the job returns")


def runs_at_once_in_the_caller_without_redis(ctx):
    """the job has run, once, in the caller's process, when run_inline returns; with no Redis anywhere"""
    # REDIS_URL (and RQ_REDIS_URL) name a port where nothing listens: anything that tries Redis fails.
    ctx.settings = ctx.settings.replace(external_redis_url=f"redis://127.0.0.1:{processes.free_port()}/0")
    name = _unique("inline")
    got = _call(ctx, f"{JOBS}.count_run", [name, 0.3])  # the job takes 0.3 s, then notes its run
    ran = demo_jobs.runs(name)
    if not ran:
        raise Fail("when run_inline returned, the job had not run yet: inline means at once, in the caller — "
                   "not in a thread, a process or a queue for later")
    if ran[0] != os.getpid():
        raise Fail(f"the job ran in process {ran[0]}, not in the caller's ({os.getpid()}): inline means at once, "
                   "in the caller's own process")
    if len(ran) != 1 or got != 1:
        raise Fail(f"one call of run_inline ran the job {len(ran)} time(s) and returned {got!r}: run it once, "
                   "and return what it returns")


def the_job_gets_what_a_queue_would_deliver(ctx):
    """the job gets its arguments as a worker would after the queue's JSON: a tuple as a list, number keys as text"""
    args = [(1, 2), {1: "one"}, "x", 2.5, None, True]
    got = _call(ctx, f"{JOBS}.arguments_as_received", args)
    expected = demo_jobs.arguments_as_received([1, 2], {"1": "one"}, "x", 2.5, None, True)
    if got != expected:
        raise Fail(f"given {args!r}, the job got {got!r}; a worker would get {expected!r}: a queue carries "
                   "arguments as JSON, so hand the job what a JSON round trip of them gives")


def refuses_arguments_a_queue_could_not_carry(ctx):
    """arguments JSON cannot carry (a set, a datetime, an object) raise TypeError, before the job runs"""
    for bad in ({1, 2}, datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc), demo_jobs.JobFailed("x")):
        name = _unique("refused")
        try:
            ctx.learner("run_inline")(f"{JOBS}.note_arguments", [name, bad])
        except TypeError:
            if demo_jobs.runs(name):
                raise Fail(f"a {type(bad).__name__} argument raised TypeError only after the job had run: check that "
                           "JSON can carry the arguments before running the job") from None
            continue
        except (NotImplementedError, Fail):
            raise
        except Exception as error:
            raise Fail(f"a {type(bad).__name__} argument raised {type(error).__name__}: raise TypeError (as "
                       "json.dumps does) for arguments JSON cannot carry") from None
        raise Fail(f"run_inline accepted a {type(bad).__name__} argument, which a queue could not carry as JSON: "
                   "raise TypeError before the job runs, so that a job that works inline also works queued")


def the_jobs_exception_reaches_the_caller(ctx):
    """the job's own exception reaches the caller unchanged"""
    try:
        got = ctx.learner("run_inline")(f"{JOBS}.fail", ["out of ink"])
    except demo_jobs.JobFailed as error:
        if str(error) != "out of ink":
            raise Fail(f"the job raised JobFailed('out of ink'); the caller got JobFailed({str(error)!r}): let the "
                       "job's exception through unchanged") from None
        return
    except (NotImplementedError, Fail):
        raise
    except Exception as error:
        raise Fail(f"the job raised JobFailed('out of ink'); the caller got {type(error).__name__}: "
                   f"{short(error, 80)}. Let the job's exception through unchanged: the caller (a request, a "
                   "test) must see what failed") from None
    raise Fail(f"the job raised JobFailed('out of ink'), yet run_inline returned normally ({got!r}): don't catch "
               "the job's exception — inline, the caller must see the failure, unchanged")


CHECKS = [runs_the_job_named_by_its_path, runs_at_once_in_the_caller_without_redis,
          the_job_gets_what_a_queue_would_deliver, refuses_arguments_a_queue_could_not_carry,
          the_jobs_exception_reaches_the_caller]
