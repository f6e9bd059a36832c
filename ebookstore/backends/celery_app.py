"""Celery on the store's Redis: the app, with the store's jobs as Celery tasks.

`ebookstore up` with EBOOKSTORE_QUEUE_BACKEND=celery runs Celery's own worker program on it:

    celery -A ebookstore.backends.celery_app worker --pool prefork --concurrency N -Q critical,default,low

Each job function that queues.toml assigns to a queue becomes a task named by its import path,
the function itself unchanged (a task wraps it; `jobs.purchase_notification` stays a plain function).
The settings below are the ones the course's lessons need, each in Celery's own words
(https://docs.celeryq.dev/en/stable/userguide/configuration.html):

- JSON only (`task_serializer`, `accept_content`): no pickle, like the RQ queues;
- `task_acks_late` + `task_reject_on_worker_lost`: a message is acknowledged after its task ran, and a
  pool process killed mid-task puts the message back (Celery's default acknowledges *before*
  running: a killed job is lost). The task may then run twice: the emails' claim keeps each once;
- `worker_prefetch_multiplier=1`: a worker process reserves one message at a time;
- retries: any exception but PermanentError, at most 5 times, exponential back-off with jitter;
- `task_publish_retry=False`: a purchase does not wait for an unreachable Redis (the outbox's relay sends later);
- every Redis key under `celery:` (kombu's `global_keyprefix`), beside RQ's `rq:` and Dramatiq's `dramatiq:`.
"""
from __future__ import annotations

import functools
from pkgutil import resolve_name

from celery import Celery

from ebookstore import queues, retries
from ebookstore.config import Settings

KEY_PREFIX = "celery:"


@functools.lru_cache(maxsize=8)
def app_for(redis_url: str) -> Celery:
    """The store's Celery app on the Redis at `redis_url` (one per URL and process)."""
    app = Celery("ebookstore", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json", accept_content=["json"], result_serializer="json", task_ignore_result=True,
        task_default_queue="default",
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_publish_retry=False, broker_connection_timeout=2, broker_connection_retry_on_startup=True,
        broker_transport_options={"global_keyprefix": KEY_PREFIX, "socket_connect_timeout": 2, "socket_timeout": 10,
                                  "max_retries": 0},  # a publish that finds Redis down fails at once (the outbox keeps it)
        worker_redirect_stdouts_level="INFO",
    )
    for path, queue in queues.load_config().jobs.items():
        app.task(resolve_name(path), name=path, queue=queue, autoretry_for=(Exception,),
                 dont_autoretry_for=(retries.PermanentError,), max_retries=5, retry_backoff=5,
                 retry_backoff_max=600, retry_jitter=True)
    return app


app = app_for(Settings.from_env().redis_url)  # what `celery -A ebookstore.backends.celery_app` loads
