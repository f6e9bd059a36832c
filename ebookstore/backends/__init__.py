"""The queue adapter: the store names its jobs, one setting picks who runs them.

Rails' Active Job is one job API over many backends (`config.active_job.queue_adapter = :sidekiq`,
`:inline` for development); Django 6's Tasks framework is Python's twin. Here the setting is
EBOOKSTORE_QUEUE_BACKEND (config.py):

  rq        RQ (the default): `rq worker`, a work-horse forked per job
  celery    Celery on the same Redis: `celery -A ebookstore.backends.celery_app worker --pool prefork`
  dramatiq  Dramatiq on the same Redis: `dramatiq ebookstore.backends.dramatiq_app --processes N`
  inline    no queue at all: the job runs at once, in the caller (Active Job's :inline); needs no Redis

Everything the store enqueues goes through `enqueue`: a purchase's notification job (after
COMMIT), the outbox relay, cron's periodic jobs. A job is named by the import path of a plain
function (ebookstore/jobs.py) with JSON arguments; Celery and Dramatiq run the functions that
queues.toml assigns to a queue (registered as tasks / actors under that same path, see
celery_app.py and dramatiq_app.py), RQ imports the path itself. Every backend delivers at least
once; the store's per-email claim (claims.py) makes each email exactly once on all of them.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from pkgutil import resolve_name
from typing import Any, Callable

from redis.exceptions import ConnectionError as RedisConnectionError

from ebookstore import queues
from ebookstore.config import QUEUE_BACKENDS, Settings

KNOWN = QUEUE_BACKENDS


class QueueUnavailable(RedisConnectionError):
    """The backend's broker (Redis) did not take the job; the outbox keeps it for the relay.

    A redis-py ConnectionError, so callers catch one kind of error (RedisError) whatever the backend."""


@dataclasses.dataclass(frozen=True)
class Call:
    """One job to enqueue: a job function's import path and its JSON arguments."""

    func: str
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    job_id: str | None = None  # fixed ids make a job enqueued twice one job where the backend allows (RQ)
    queue: str | None = None   # default: the queue queues.toml assigns to `func`
    retry: Any = None          # RQ's Retry; Celery and Dramatiq apply the policy their task/actor declares
    rq_options: dict = dataclasses.field(default_factory=dict)  # more of RQ's job options (result_ttl, meta, …)


def path_of(func: Callable | str) -> str:
    return func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"


def arguments_text(args, kwargs) -> str:
    """A call's arguments as Python writes them: "7, period='daily'" (a job's description, a hint)."""
    return ", ".join([*map(repr, args), *(f"{name}={value!r}" for name, value in kwargs.items())])


def get(settings: Settings | None = None, connection=None) -> "Backend":
    """The backend `settings` name (default: the environment's). `connection`: an RQ Redis connection to reuse."""
    settings = settings or Settings.from_env()
    return BACKENDS[settings.queue_backend](settings, connection)


class Backend:
    """Enqueues Calls; the worker side (programs, readiness, roles) is in workers_for()."""

    name = "?"

    def __init__(self, settings: Settings, connection=None):
        self.settings = settings
        self._connection = connection

    def enqueue(self, calls: list[Call], pipeline=None) -> list[str]:
        """Enqueue `calls` (in one round trip where the library allows); their job ids.

        `pipeline`: a redis-py pipeline of the caller's (RQ only) that the jobs join, so they are
        enqueued with the caller's other commands, when the caller executes it; the others send at once."""
        raise NotImplementedError

    def enqueue_one(self, func: Callable | str, *args, **options) -> str:
        return self.enqueue([Call(path_of(func), args, **options)])[0]

    def _queue(self, call: Call) -> str:
        return call.queue or queues.load_config().queue_for(call.func)


class RQBackend(Backend):
    """RQ: each Call becomes an RQ job (JSON serializer) on the store's queue; all of them in one pipeline."""

    name = "rq"

    @property
    def connection(self):
        if self._connection is None:
            self._connection = queues.connect(self.settings)
        return self._connection

    def enqueue(self, calls: list[Call], pipeline=None) -> list[str]:
        from rq import Queue
        pipe = pipeline if pipeline is not None else self.connection.pipeline()
        jobs = []
        for call in calls:
            shown = arguments_text(call.args, call.kwargs)
            data = Queue.prepare_data(call.func, args=tuple(call.args), kwargs=call.kwargs, job_id=call.job_id,
                                      description=f"{call.func.rsplit('.', 1)[-1]}({shown})", retry=call.retry,
                                      **call.rq_options)
            jobs += queues.get_queue(self._queue(call), self.connection).enqueue_many([data], pipeline=pipe)
        if pipeline is None:
            with pipe:
                pipe.execute()
        return [job.id for job in jobs]


class InlineBackend(Backend):
    """No queue: each job runs at once, in the caller, and its exception reaches the caller (Active Job's :inline)."""

    name = "inline"

    def enqueue(self, calls: list[Call], pipeline=None) -> list[str]:
        for call in calls:
            resolve_name(call.func)(*call.args, **call.kwargs)
        return [call.job_id for call in calls]


class CeleryBackend(Backend):
    """Celery: `send_task` by name (the job's path) to the job's queue, the job id as Celery's task id."""

    name = "celery"

    def enqueue(self, calls: list[Call], pipeline=None) -> list[str]:
        from kombu.exceptions import OperationalError

        from ebookstore.backends import celery_app
        app = celery_app.app_for(self.settings.redis_url)
        try:
            return [app.send_task(call.func, args=list(call.args), kwargs=call.kwargs, task_id=call.job_id,
                                  queue=self._queue(call)).id for call in calls]
        except OperationalError as error:
            raise QueueUnavailable(f"Celery could not reach its broker: {error}") from error


class DramatiqBackend(Backend):
    """Dramatiq: a Message per call (actor name = the job's path) on the job's queue, the job id as message id."""

    name = "dramatiq"

    def enqueue(self, calls: list[Call], pipeline=None) -> list[str]:
        from dramatiq import Message

        from ebookstore.backends import dramatiq_app
        broker = dramatiq_app.broker_for(self.settings.redis_url)
        sent = []
        for call in calls:
            fixed_id = {"message_id": call.job_id} if call.job_id else {}
            message = Message(queue_name=self._queue(call), actor_name=call.func, args=tuple(call.args),
                              kwargs=call.kwargs, options={}, **fixed_id)
            sent.append(broker.enqueue(message).message_id)
        return sent


BACKENDS: dict[str, type[Backend]] = {"rq": RQBackend, "celery": CeleryBackend, "dramatiq": DramatiqBackend,
                                      "inline": InlineBackend}
assert tuple(BACKENDS) == KNOWN


# -- the worker side: each library's own worker program ----------------------------------------------
CELERY_APP = "ebookstore.backends.celery_app"
DRAMATIQ_BROKER = "ebookstore.backends.dramatiq_app"
# What each program writes to its log once it takes jobs (Dramatiq: once per worker process).
READY_LINES = {"celery": " ready.", "dramatiq": "Worker process is ready for action."}


def worker_argv(settings: Settings, count: int, name: str, shutdown_grace: float = 25) -> list[str] | None:
    """The command of the worker program of `settings`' backend, with `count` worker processes; None for inline.

    RQ's (several `rq worker`s) is workers.worker_argv. Celery: one `celery worker` named `name`, whose
    prefork pool forks `count` processes. Dramatiq: one `dramatiq` main process that forks `count`
    worker processes of one thread each, given `shutdown_grace` s to finish their messages when stopped.
    Neither holds the Redis password on its command line: the apps read REDIS_URL from the environment.
    """
    bin_dir = Path(sys.executable).parent
    queue_names = queues.load_config().names
    if settings.queue_backend == "celery":
        return [str(bin_dir / "celery"), "-A", CELERY_APP, "worker", "--pool", "prefork", "--concurrency", str(count),
                "--queues", ",".join(queue_names), "--hostname", f"{name}@127.0.0.1", "--loglevel", "INFO",
                "--without-gossip", "--without-mingle"]
    if settings.queue_backend == "dramatiq":
        return [str(bin_dir / "dramatiq"), DRAMATIQ_BROKER, "--processes", str(count), "--threads", "1",
                "--queues", *queue_names, "--worker-shutdown-timeout", str(int(shutdown_grace * 1000))]
    if settings.queue_backend == "inline":
        return None
    raise ValueError(f"the {settings.queue_backend} backend's workers are `rq worker`s: see workers.worker_argv")


def ready_in_log(backend: str, log_text: str, count: int) -> bool:
    """Whether a Celery or Dramatiq worker program's log says it (all `count` of its processes) takes jobs."""
    needed = 1 if backend == "celery" else count
    return log_text.count(READY_LINES[backend]) >= needed

