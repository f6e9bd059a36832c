"""Dramatiq on the store's Redis: the broker, with the store's jobs as Dramatiq actors.

`ebookstore up` with EBOOKSTORE_QUEUE_BACKEND=dramatiq runs Dramatiq's own worker program on it:

    dramatiq ebookstore.backends.dramatiq_app --processes N --threads 1 --queues critical default low

Each job function that queues.toml assigns to a queue becomes an actor named by its import path,
the function itself unchanged. Dramatiq acknowledges a message after its actor ran (a killed
worker's messages go back to the queue once its heartbeat is missed: the claim keeps each email
once), and retries any exception but PermanentError (`throws`), at most 5 times, with exponential
back-off (https://dramatiq.io/cookbook.html#retries). Redis keys live under `dramatiq:`.
"""
from __future__ import annotations

import functools
from pkgutil import resolve_name

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from ebookstore import queues, retries
from ebookstore.config import Settings

NAMESPACE = "dramatiq"


@functools.lru_cache(maxsize=8)
def broker_for(redis_url: str) -> RedisBroker:
    """The store's Dramatiq broker on the Redis at `redis_url` (one per URL and process), its actors declared."""
    broker = RedisBroker(url=redis_url, namespace=NAMESPACE, socket_connect_timeout=2, socket_timeout=10)
    for path, queue in queues.load_config().jobs.items():
        dramatiq.actor(resolve_name(path), actor_name=path, queue_name=queue, broker=broker, max_retries=5,
                       min_backoff=5_000, max_backoff=600_000, throws=(retries.PermanentError,))
    return broker


broker = broker_for(Settings.from_env().redis_url)  # what the `dramatiq` command loads
dramatiq.set_broker(broker)
