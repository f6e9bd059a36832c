"""Checks of exercise 05: where a job is (queue and registries), and the dashboard's counts."""
import time

from rq.exceptions import InvalidJobOperation

from ebookstore import queues
from ebookstore.course import forked_worker, specimens
from ebookstore.course.checks.common import Fail, call_with_time_limit
from ebookstore.runtime import processes

GRACE = 0.3  # s: how long where_is may lag behind RQ's own view of a job


def follows_a_job(ctx):
    """where_is follows a job: queued, started, finished (and failed)"""
    where_is = ctx.learner("where_is")
    queue = queues.get_queue("low", ctx.redis)  # not "default": where_is answers for the queue it is given
    slow = queue.enqueue(time.sleep, 0.5)  # long enough to be seen running, polling every 20 ms
    broken = queue.enqueue("ebookstore.reports.period_bounds", "hourly")  # raises ValueError
    if where_is(ctx.redis, "low", slow.id) != "queued":
        raise Fail(f"a job nobody has taken yet is 'queued' (it is in the queue's list); got "
                   f"{where_is(ctx.redis, 'low', slow.id)!r}")
    worker = forked_worker.start(ctx.stack, "worker", ["low"], burst=True, simple=True)
    seen = []

    def says(job, wanted: str, past: tuple[str, ...], seconds: float) -> bool:
        """Whether where_is said `wanted` for `job` within `seconds`. Once RQ itself has marked the job
        `past` that state (it writes the status and the registries in one transaction), where_is can no
        longer say it: given up GRACE s later, not after the whole wait."""
        deadline, over_since = time.monotonic() + seconds, None
        while time.monotonic() < deadline:
            try:  # read before asking: then the answer came after it
                over = job.get_status(refresh=True) in past
            except InvalidJobOperation:  # its hash is gone (deleted by the learner's code?): wait it out
                over = False
            seen.append(where_is(ctx.redis, "low", job.id))
            if seen[-1] == wanted:
                return True
            if over:
                over_since = over_since or time.monotonic()
                if time.monotonic() - over_since > GRACE:
                    return False
            time.sleep(0.02)
        return False
    # The first wait includes the worker's start: seconds on a machine grading a class at once (more where it
    # starts afresh, a whole Python: see forked_worker).
    if not says(slow, "started", ("finished", "failed"), 10):
        raise Fail(f"while a worker runs it, the job is 'started' (StartedJobRegistry); you said {seen[-3:]}")
    if not (says(slow, "finished", ("finished",), 4) and says(broken, "failed", ("failed",), 2)):
        raise Fail(f"a job that ran is 'finished' (FinishedJobRegistry), one that raised is 'failed' "
                   f"(FailedJobRegistry); you said {seen[-3:]}")
    if where_is(ctx.redis, "low", "no-such-job") != "unknown":
        raise Fail("a job id found nowhere is 'unknown'")
    # Taken out of the queue's list (queue.remove), a job is in no list and no registry any more,
    # though its status field still says "queued": only the lists tell. The burst worker must be gone
    # first: on a busy machine it may still be looking at "low" and take the job between enqueue and remove.
    forked_worker.stop(worker, timeout=5)
    taken = queue.enqueue("ebookstore.jobs.daily_statistics")
    queue.remove(taken)
    if where_is(ctx.redis, "low", taken.id) != "unknown":
        raise Fail(f"a job removed from the queue's list is in no list and no registry, so it is 'unknown'; you said "
                   f"{where_is(ctx.redis, 'low', taken.id)!r}. Its status field still says 'queued': answer "
                   "from the queue and its registries, not from the job's status")
    if where_is(ctx.redis, "default", slow.id) != "unknown":
        raise Fail(f"job {slow.id} ran on 'low': in queue 'default' and its registries it is 'unknown'; you said "
                   f"{where_is(ctx.redis, 'default', slow.id)!r}. Look in the registries of the queue you were given")


def reads_the_dashboard(ctx):
    """dashboard_counts reads the queue counts from the dashboard, with credentials"""
    dashboard_counts = ctx.learner("dashboard_counts")
    for name, n in (("critical", 1), ("low", 2), ("default", 1)):
        for _ in range(n):
            job = queues.get_queue(name, ctx.redis).enqueue("ebookstore.jobs.daily_statistics")
    queues.get_queue("default", ctx.redis).remove(job)  # a queue the dashboard lists, with no job waiting
    ctx.stack.web()
    base = f"{ctx.settings.web_url}/jobs"
    try:
        counts = dashboard_counts(base, "tutor", "check-password")
    except NotImplementedError:
        raise
    except Exception as error:
        raise Fail(f"reading the dashboard raised {type(error).__name__} ({str(error)[:60]}): it answers only with "
                   "credentials, sent by basic authentication (an Authorization header)") from None
    if not isinstance(counts, dict) or counts.get("critical") != 1 or counts.get("low") != 2:
        raise Fail(f"the dashboard shows critical 1, low 2; you returned {counts!r}")
    if counts.get("default", "missing") != 0:
        raise Fail(f"the dashboard also lists 'default' with 0 jobs waiting; you returned {counts!r}: keep every "
                   "queue it shows, the empty ones too")
    try:
        wrong = dashboard_counts(base, "tutor", "wrong password")
    except Exception:
        pass
    else:
        raise Fail(f"with a wrong password the dashboard answers 401, yet you returned {wrong!r}: let that error "
                   "reach the caller")
    port = processes.free_port()
    specimens.listener(ctx.stack, port, "silent-dashboard")  # accepts the connection, never answers
    finished, answer, error = call_with_time_limit(dashboard_counts, f"http://127.0.0.1:{port}/jobs", "tutor",
                                                   "check-password", 0.5, seconds=2.5)
    if not finished:
        raise Fail("a dashboard that never answers kept dashboard_counts(…, timeout=0.5) waiting over 2.5 s: give "
                   "the request its timeout (urlopen(request, timeout=timeout))")
    if error is None:
        raise Fail(f"a dashboard that never answered gave {answer!r}: let the timeout error reach the caller")


CHECKS = [follows_a_job, reads_the_dashboard]
