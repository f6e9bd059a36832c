"""Queues of the store: their configuration file, Redis connection and enqueueing.

Queues use RQ's JSON serializer: a job's arguments must be JSON (ids and
strings, never objects), and nothing unpickles data it finds in Redis.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
from pathlib import Path
from typing import Callable

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from .config import PACKAGE_DIR, Settings

SERIALIZER = JSONSerializer

try:  # redis-py 7 and later (RESP3 by default since 8)
    from redis.maint_notifications import MaintNotificationsConfig
    # A command cut short between its request and its reply (an Interrupt, a signal handler that raises)
    # puts its connection back in the pool with the reply unread. The pool checks for that and reconnects,
    # but not while "maintenance notifications" (RESP3 pushes from Redis Enterprise) may be pending: it
    # then hands the connection out as it is, and the next command reads the earlier one's reply ("Wrong
    # number of response items from pipeline execution", or worse, a wrong value). The store's Redis
    # sends none: the check is kept.
    CHECKED = {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}
except ImportError:  # redis-py 6: the pool always checks
    CHECKED = {}


@dataclasses.dataclass(frozen=True)
class QueueConfig:
    """Queue names in strict order with their weights, and each job's queue."""

    weights: dict[str, int]
    jobs: dict[str, str]

    @property
    def names(self) -> list[str]:
        return list(self.weights)

    def queue_for(self, func: Callable | str) -> str:
        """The queue a job function belongs to ('default' if the file does not say)."""
        name = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
        return self.jobs.get(name, "default")


def config_path() -> Path:
    env = os.environ.get("EBOOKSTORE_QUEUES")
    return Path(env) if env else PACKAGE_DIR / "queues.toml"


def load_config(path: Path | str | None = None) -> QueueConfig:
    """Read the queue configuration file (TOML); see ebookstore/queues.toml.

    Parsed once per version of the file: an edit (its modification time) is seen at once.
    """
    path = Path(path or config_path())
    return _parse(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _parse(path: str, mtime_ns: int) -> QueueConfig:
    data = tomllib.loads(Path(path).read_text())
    weights = {str(name): int(weight) for name, weight in data.get("queues", {}).items()}
    if not weights or any(w < 1 for w in weights.values()):
        raise ValueError(f"{path}: [queues] needs names with weights >= 1")
    jobs = {str(job): str(queue) for job, queue in data.get("jobs", {}).items()}
    unknown = sorted(set(jobs.values()) - set(weights))
    if unknown:
        raise ValueError(f"{path}: jobs assigned to undeclared queues {unknown}")
    return QueueConfig(weights, jobs)


def connect(settings: Settings | None = None) -> Redis:
    """A Redis connection to the store's Redis, with timeouts so nothing hangs."""
    settings = settings or Settings.from_env()
    return Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=10, **CHECKED)


def get_queue(name: str, connection: Redis) -> Queue:
    """The store's queue `name` on `connection` (a Redis from connect()), with the JSON serializer."""
    return Queue(name, connection=connection, serializer=SERIALIZER)


def enqueue(connection: Redis, func: Callable, *args, config: QueueConfig | None = None, **options):
    """Enqueue `func(*args)` on the queue the configuration file assigns to it."""
    config = config or load_config()
    return get_queue(config.queue_for(func), connection).enqueue(func, args=args, **options)
