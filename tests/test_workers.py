"""Queue order: RQ's strict order, and Sidekiq-style weights, on real worker processes; a worker's stop."""
import random
import signal
import sys
import time
from collections import Counter

import pytest
from redis import Redis
from rq.job import Job
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler

from ebookstore import queues, workers
from ebookstore.runtime import processes
from tests import jobfuncs


def enqueue_labelled(redis, counts: dict[str, int]) -> list[str]:
    ids = []
    for name, n in counts.items():
        queue = queues.get_queue(name, redis)
        ids += [queue.enqueue(jobfuncs.record, name).id for _ in range(n)]
    return ids


def execution_order(redis, ids) -> list[str]:
    """Queue names of the jobs in the order a worker ran them."""
    results = [Job.fetch(i, connection=redis, serializer=queues.SERIALIZER).latest_result() for i in ids]
    assert all(r is not None for r in results), "every job must have run"
    return [r.return_value["label"] for r in sorted(results, key=lambda r: r.return_value["at"])]


def test_weighted_order_follows_the_weights():
    rng = random.Random(7)
    firsts = Counter(workers.weighted_order(["critical", "default", "low"], [3, 2, 1], rng)[0]
                     for _ in range(6000))
    assert abs(firsts["critical"] / 6000 - 3 / 6) < 0.03
    assert abs(firsts["default"] / 6000 - 2 / 6) < 0.03
    assert abs(firsts["low"] / 6000 - 1 / 6) < 0.03
    assert sorted(workers.weighted_order(["a", "b", "c"], [1, 1, 5], rng)) == ["a", "b", "c"]


def test_strict_worker_runs_critical_before_low(redis, stack):
    ids = enqueue_labelled(redis, {"low": 5, "default": 5, "critical": 5})  # low enqueued first
    stack.worker("strict", burst=True, simple=True).wait(timeout=30)
    assert execution_order(redis, ids) == ["critical"] * 5 + ["default"] * 5 + ["low"] * 5


def test_weighted_worker_does_not_starve_low(redis, stack):
    ids = enqueue_labelled(redis, {"critical": 30, "low": 30})
    stack.worker("weighted", ["critical", "low"], burst=True, weighted=True).wait(timeout=30)
    order = execution_order(redis, ids)
    first_half = Counter(order[:30])
    # With weights 3:1, low comes first about a quarter of the time; strict order would give 0.
    assert 1 <= first_half["low"] <= 18, order
    assert "worker-class" not in stack.log("weighted")  # it started with our class, no error


def test_a_worker_given_back_ready_stops_warmly_on_an_immediate_sigterm(redis, stack):
    """`wait_ready` waits for RQ's SIGTERM handler too: RQ installs it after registering the worker and forking its
    scheduler, and a SIGTERM in between ended the worker at once (status -15; 6 of 8 starts, idle machine)."""
    for n in range(3):
        stack.worker(f"eager-{n}", with_scheduler=True, wait_ready=True).send_signal(signal.SIGTERM)
        assert stack.wait(f"eager-{n}", timeout=10) == 0, stack.log(f"eager-{n}")
        assert "warm shut down requested" in stack.log(f"eager-{n}")


def _leave_a_reply_unread(connection) -> None:
    """What a command cut short between its request and its reply leaves in the pool (an Interrupt, or RQ's
    SIGTERM handler raising StopRequested there): a connection whose reply was never read."""
    pool = connection.connection_pool
    spoiled = pool.get_connection()
    spoiled.send_command("GET", "no-such-key")
    pool.release(spoiled)


def test_the_store_connection_never_reads_a_reply_meant_for_an_earlier_command(redis):
    _leave_a_reply_unread(redis)
    pipe = redis.pipeline()
    pipe.set("replies", "mine").incr("replies-counted")
    assert pipe.execute() == [True, 1]
    assert redis.get("replies") == b"mine"


@pytest.mark.parametrize("worker_class", [workers.StoreWorker, workers.SimpleWorker])
def test_a_worker_stopped_between_a_command_and_its_reply_still_records_its_death(redis, settings, worker_class):
    """RQ's SIGTERM handler raises StopRequested wherever an idle worker is; the teardown must not then read
    a reply left unread in the pool (it did: "Wrong number of response items", exit status 1). The pool is put
    in the state such a stop leaves (no signal: the window is microseconds wide), then the worker torn down."""
    connection = Redis.from_url(settings.redis_url)  # as RQ's command line makes it (redis-py's defaults)
    worker = worker_class([queues.get_queue("default", connection)], name="stopped-mid-command",
                          connection=connection, serializer=queues.SERIALIZER)
    worker.register_birth()
    _leave_a_reply_unread(connection)
    try:
        worker.teardown()
    finally:
        connection.close()
    assert redis.hexists("rq:worker:stopped-mid-command", "death")


def test_a_scheduler_that_does_not_stop_is_killed_after_the_grace(redis, stack):
    """RQ's warm shutdown waits for the worker's scheduler child without a limit; the store's, SCHEDULER_STOP_GRACE."""
    worker = stack.worker("keeper", with_scheduler=True, wait_ready=True)
    scheduler = processes.wait_until(lambda: next((p for p in worker.children() if processes.role(p) == "scheduler"),
                                                  None), 10, what="the scheduler child")
    scheduler.send_signal(signal.SIGSTOP)  # a scheduler that cannot act on SIGTERM (as one seen stuck did not)
    stopped_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(workers.StoreWorker.SCHEDULER_STOP_GRACE + 10)
    finally:
        if scheduler.is_running():
            scheduler.send_signal(signal.SIGCONT)
    waited = time.monotonic() - stopped_at
    grace = workers.StoreWorker.SCHEDULER_STOP_GRACE
    assert grace - 0.5 < waited < grace + 5, f"the worker waited {waited:.1f} s for its scheduler (grace {grace} s)"
    assert processes.gone(scheduler)
    assert "did not stop within" in stack.log("keeper")


SLEEPY_SCHEDULER = """
from ebookstore import queues
from ebookstore.config import Settings
from ebookstore.workers import StoreScheduler
StoreScheduler(["low"], connection=queues.connect(Settings.from_env()), interval=30, name="sleepy").work()
"""


def test_the_scheduler_stops_on_sigterm_at_once_not_after_its_sleep(redis, stack):
    """RQ's scheduler notices SIGTERM only when its sleep between two rounds (1 s; here 30 s) is over, and
    the worker's warm shutdown waits for it; the store's wakes up at once, releases its locks and exits."""
    key, lock = SCHEDULER_KEY_TEMPLATE % "sleepy", RQScheduler.get_locking_key("low")
    scheduler = stack.start("scheduler", [sys.executable, "-c", SLEEPY_SCHEDULER],
                            ready=lambda: redis.exists(key) and redis.exists(lock))
    time.sleep(0.3)  # through its first round, into the sleep
    told = time.monotonic()
    scheduler.send_signal(signal.SIGTERM)
    scheduler.wait(10)  # raises TimeoutExpired if it sleeps on
    assert time.monotonic() - told < 5
    assert not redis.exists(key) and not redis.exists(lock), "it registered its death and released its lock"


def test_a_store_worker_runs_the_store_scheduler(redis):
    """StoreWorker builds its scheduler in _start_scheduler, a copy of RQ's: RQ must still call it."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    worker = workers.StoreWorker(["low"], connection=redis, serializer=queues.SERIALIZER)
    try:
        worker.work(burst=True, with_scheduler=True)  # in this process: RQ installs its signal handlers here
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert isinstance(worker.scheduler, workers.StoreScheduler)


@pytest.mark.parametrize("worker_class", [workers.StoreWorker, workers.SimpleWorker])
def test_a_store_worker_ends_its_pubsub_thread_when_it_unsubscribes(redis, worker_class):
    """The store's workers tell the pubsub thread to stop before they send UNSUBSCRIBE, whose reply wakes it.

    Here the thread reads that reply before `unsubscribe()` goes on (as it may on a busy machine): in RQ's
    order it then waits on for a subscription, the worker's exit waits out RQ's 1-s join, and it is alive.
    """
    worker = worker_class(["low"], connection=redis, serializer=queues.SERIALIZER)
    worker.subscribe()
    processes.wait_until(lambda: worker.pubsub.subscribed, 5, what="the subscription")
    send = worker.pubsub.unsubscribe

    def unsubscribe_and_let_the_reply_be_read(*args):
        send(*args)
        processes.wait_until(lambda: not worker.pubsub.subscribed, 5, what="the thread to read the reply")

    worker.pubsub.unsubscribe = unsubscribe_and_let_the_reply_be_read
    worker.unsubscribe()
    assert not worker.pubsub_thread.is_alive()
