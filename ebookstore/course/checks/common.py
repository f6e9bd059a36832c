"""What the checks of every exercise share: `Fail`, a worker run, and how a failure is told.

A check is a function of a `grading.Context` (the learner's module, settings,
a Stack, a Redis of the check's own) that raises `Fail(hint)` when the
learner's code is not there yet. Its docstring's first line is its name.

A hint is one to three sentences in the learner's terms. When a worker ran the
learner's code and the job failed, the hint names the exception the job ended
with (read from the job's result in Redis), never a log tail or a traceback.
"""
import contextlib
import inspect
from email.message import EmailMessage
import os
import re
import threading
import time

from ebookstore.backends import arguments_text

# The last line of a Python traceback: "ValueError: bad id", "redis.exceptions.ConnectionError: …".
_EXCEPTION_LINE = re.compile(r"^\s*((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning)\b.*)$")


class Fail(AssertionError):
    """A check did not pass; the message is the hint shown to the learner."""


def run_worker(ctx, name="worker", queue_names=None, simple=True, **options) -> str:
    """Run a real RQ worker (`simple`: non-forking) until `queue_names` (default: all) are empty; return its log.

    The worker is forked from the check's process, which has RQ loaded (see forked_worker). Other options go
    to workers.worker_argv. Raises psutil.TimeoutExpired if it still runs after 10 s.
    """
    from ebookstore.course import forked_worker  # not at the top: a notebook's kernel imports this module
    return forked_worker.run(ctx.stack, name, queue_names, simple=simple, **options)


def await_burst_worker(ctx, proc, idle: float = 3.0) -> str:
    """Wait for a worker the learner's command started (`proc`) to run what it can and exit.

    "exited" once it has; "waiting" once it has sat `idle` s in a blocking pop on the check's Redis (a
    worker without --burst whose queues are empty: it takes no job left, and it does not exit; a worker
    told --max-idle-time under `idle` s still gets to exit); "late" when the check's time is nearly up
    (ctx.seconds_left). A slow start or a slow exit on a busy machine is waited for, not judged.
    """
    from ebookstore.runtime import processes
    blocked_since = None
    while processes.wait_gone([proc], 0.1):  # reaped through the Stack's Popen: its exit status is kept
        now = time.monotonic()
        if not _waits_on_redis(ctx, proc):
            blocked_since = None
        elif blocked_since is None:
            blocked_since = now
        elif now - blocked_since >= idle:
            return "waiting"
        if ctx.seconds_left() <= 0:
            return "late"
    return "exited"


def _waits_on_redis(ctx, proc) -> bool:
    """True if `proc`, or a process it started, waits in a blocking command on the check's Redis (RQ's dequeue
    without --burst: BLPOP, or BLMOVE for one queue): a client Redis lists with flag b (CLIENT LIST) whose port is
    that of one of the process's own TCP connections to the check's Redis (which only the check and it use)."""
    import psutil
    blocked = {client.get("addr", "").rpartition(":")[2] for client in ctx.redis.client_list()
               if "b" in client.get("flags", "")}
    if not blocked:  # the usual case, a burst worker at work: no need to look at its sockets
        return False
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return False
    for member in family:
        with contextlib.suppress(psutil.Error):
            if any(c.raddr and c.raddr.port == ctx.settings.redis_port and str(c.laddr.port) in blocked
                   for c in member.net_connections("tcp")):
                return True
    return False


def call_arguments(func, args, kwargs) -> list | None:
    """The values a job's `args` and `kwargs` give `func`'s parameters, in the signature's order (None if they
    do not fit it): f(7) and f(purchase_id=7) are the same call, and a check compares calls, not their form."""
    try:
        return list(inspect.signature(func).bind(*args, **kwargs).arguments.values())
    except (TypeError, ValueError):
        return None


def shown_call(job) -> str:
    """A job's arguments as its call writes them: "7, period='daily'"."""
    return arguments_text(job.args, job.kwargs)


def short(text, limit: int = 160) -> str:
    """`text` on one line, cut at `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def last_error(log: str) -> str | None:
    """The last exception line in a process's output ("KeyError: 'label'"), or None."""
    found = [m.group(1) for m in map(_EXCEPTION_LINE.match, log.splitlines()) if m]
    return short(found[-1]) if found else None


def job_error(job) -> str:
    """The exception a failed job ended with, "Type: message", from its result in Redis."""
    result = job.latest_result()
    text = (getattr(result, "exc_string", None) or getattr(job, "exc_info", None) or "").strip()
    return last_error(text) or short(text.splitlines()[-1]) if text else "an error the worker did not record"


def job_outcome(job, log: str = "") -> str:
    """Why a job did not finish, in a few words: its exception if it failed, else what the worker said."""
    status = job.get_status(refresh=True)
    status = getattr(status, "value", status) or "gone"
    if status == "failed":
        return f"the job failed in the worker with {job_error(job)}"
    said = last_error(log)
    if said:
        return f"the job is {status}; the last error in the worker's log: {said}"
    return f"the job is {status} after the worker ran"


def call_with_time_limit(func, *args, seconds: float):
    """(finished, result, error): call `func(*args)` in a thread, waiting at most `seconds`.

    For the learner's code that might wait forever (a socket read without a timeout): the
    check can then say so instead of hanging. A call that is still waiting goes on in the
    background until what it waits for goes away (the check stops its processes).
    """
    outcome = {}

    def call():
        try:
            outcome["value"] = func(*args)
        except BaseException as error:  # noqa: BLE001 - handed back to the check
            outcome["error"] = error

    thread = threading.Thread(target=call, daemon=True, name="learner-call")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return False, None, None
    if isinstance(outcome.get("error"), NotImplementedError):
        raise outcome["error"]  # the stub: the grader says "not written yet"
    return True, outcome.get("value"), outcome.get("error")


@contextlib.contextmanager
def local_time_zone(name: str = "America/Los_Angeles"):
    """Run the learner's code with the machine's local time zone set to `name` (not UTC).

    A naive datetime (datetime.now(), datetime.utcnow()) means local time to RQ: code that
    mixes up UTC and local time is right on a UTC machine by luck only. Restored afterwards.
    """
    saved = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def delivered_emails(settings) -> dict[str, "EmailMessage"]:
    """Every email in the check's Maildir, by its "X-Ebookstore-Key" header (what the outbox lists, with bodies)."""
    from ebookstore import mail
    return {m["X-Ebookstore-Key"]: m for m in mail.maildir(settings)}


def body(message) -> str:
    """The text of an email from delivered_emails."""
    payload = message.get_payload(decode=True) if not message.is_multipart() else b""
    return (payload or b"").decode(errors="replace")


def job_data(redis, job) -> list | None:
    """The job as stored in Redis, decoded as JSON ([func name, instance, args, kwargs]), or None if it is not JSON."""
    import json
    import zlib
    try:
        return json.loads(zlib.decompress(redis.hget(job.key, "data")))
    except (ValueError, TypeError, zlib.error):
        return None
