"""Workers of the store: RQ's own `Worker` (strict order) and a weighted one.

RQ reads a worker's queues in strict order: while `critical` has jobs, `low`
waits — possibly forever. Sidekiq's weights (`-q critical,3 -q default,2 -q
low,1`) instead pick the queue to look at first at random, in proportion to
its weight, for every job. `WeightedWorker` does the same, the way RQ's own
`RandomWorker` shuffles its queues: by reordering them after each job.
"""
from __future__ import annotations

import importlib
import os
import random
import select
import signal
import sys
from pathlib import Path

from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from rq import SimpleWorker as RQSimpleWorker, Worker, worker_registration
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.registry import clean_registries
from rq.scheduler import RQScheduler
from rq.utils import now

from ebookstore import jobs, queues  # noqa: F401  jobs: see preload_job_modules
from ebookstore.config import Settings

PRELOAD_VARIABLE = "EBOOKSTORE_PRELOAD"  # more job modules to import before forking, comma-separated


def preload_job_modules() -> None:
    """Import the job modules in the worker, before it forks.

    A forking worker's horse then finds them already loaded instead of importing
    them again for every job (23 → 44 jobs/s here). The store's own `jobs` is
    imported above; other modules (the course's demo jobs) are named in
    $EBOOKSTORE_PRELOAD by whoever starts the worker.
    """
    for name in filter(None, os.environ.get(PRELOAD_VARIABLE, "").split(",")):
        importlib.import_module(name.strip())


def weighted_order(items: list, weights: list[int], rng: random.Random = random) -> list:
    """`items` in a random order where an item of weight w comes first w/total of the time.

    It is Sidekiq's rule: put each queue name in a list `weight` times, shuffle,
    keep the first occurrence of each.
    """
    pool = [i for i, weight in enumerate(weights) for _ in range(weight)]
    rng.shuffle(pool)
    order = list(dict.fromkeys(pool))
    return [items[i] for i in order]


class StoreScheduler(RQScheduler):
    """RQ's scheduler (the worker's child that enqueues jobs when their time comes), which stops within a
    moment of SIGTERM: RQ's finishes its 1-s sleep first, and the worker's warm shutdown waits for it."""

    _waker: int | None = None  # the write end of a pipe the loop waits on

    def work(self):
        """RQ 3.0's loop, its `time.sleep(interval)` a wait on a pipe that request_stop writes to."""
        wake, self._waker = os.pipe()
        os.set_blocking(self._waker, False)
        try:
            self._install_signal_handlers()
            self.register_birth()
            while not self._stop_requested:
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
                select.select([wake], [], [], self.interval)
            self.stop()
        finally:
            waker, self._waker = self._waker, None
            os.close(wake)
            os.close(waker)

    def request_stop(self, signum=None, frame=None):
        super().request_stop(signum, frame)
        if self._waker is not None:  # a signal handler may not take a lock; writing to a pipe is safe
            try:
                os.write(self._waker, b"!")
            except BlockingIOError:
                pass  # full of earlier wake-ups: the loop wakes anyway


class CleanExit:
    """How the store's workers end (mixed into RQ's Worker and SimpleWorker): on fresh connections to Redis,
    and without waiting out RQ's 1-s join of the pubsub thread."""

    def teardown(self):
        """RQ's, on fresh connections to Redis: the ones in the pool may hold a reply that was never read.

        RQ's SIGTERM handler raises StopRequested wherever an idle worker is, also between a command sent
        and its reply. That connection goes back to the pool with the reply unread, and redis-py 8 (RESP3,
        see queues.CHECKED; RQ makes this connection) hands it out unchecked: register_death then read it
        ("Wrong number of response items from pipeline execution"), and the worker ended with status 1,
        its death unrecorded (seen in a test that SIGTERMs workers as soon as they are ready).
        """
        self.connection.connection_pool.disconnect(inuse_connections=False)  # the pubsub thread's stays
        super().teardown()

    def unsubscribe(self):
        """RQ 3.0's, with the pubsub thread told to stop before the UNSUBSCRIBE whose reply wakes it, not after.

        In RQ's order the thread can read the reply first and go round again, to wait (60 s) for a
        subscription that never comes: the worker's exit then waits out RQ's 1-s join timeout. Seen in
        `ebookstore down`, two workers stopping at once: one of them often took a second longer.
        """
        if self.pubsub_thread:
            self.log.info('Worker %s: unsubscribing from channel %s', self.name, self.pubsub_channel_name)
            self.pubsub_thread.stop()
            self.pubsub.unsubscribe()
            self.pubsub_thread.join(timeout=1)
            self.pubsub.close()


class StoreWorker(CleanExit, Worker):
    """RQ's Worker, with a job heartbeat that notices a dead worker in seconds, not minutes.

    While a job runs, the worker renews the job's entry in the StartedJobRegistry
    every `job_monitoring_interval` seconds, with a time to live. If the worker
    dies (kill -9, a crash), renewals stop, the entry expires, and another
    worker's maintenance (every `maintenance_interval` s) finds the job
    abandoned and retries it. RQ adds a fixed 60 s to that time to live; the
    store uses a few seconds (HEARTBEAT_GRACE), so recovery takes seconds.
    """

    HEARTBEAT_GRACE = 3  # seconds a worker may miss its heartbeat before its job counts as abandoned
    INTERMEDIATE_GRACE = 5  # seconds a dequeued job may wait to be started before it counts as abandoned
    MAINTENANCE_LOCK_TTL = 10  # seconds
    SCHEDULER_STOP_GRACE = 5  # seconds the scheduler child may take to stop (StoreScheduler: a moment)
    # A Redis restart: every command waits and tries again (0.25, 0.5, 1, 2, 4, 4 … s), for about
    # five minutes, instead of ending the worker. Then it gives up and exits; a supervisor starts it again.
    REDIS_RETRY = Retry(ExponentialBackoff(cap=4, base=0.25), retries=75)
    max_connection_wait_time = 4.0  # RQ's own back-off while waiting for jobs (RQ: up to 60 s)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The connection is shared by the queues, copied by the scheduler child and inherited
        # by each work-horse: all of them ride out a Redis restart.
        self.connection.set_retry(self.REDIS_RETRY)
        preload_job_modules()

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         date_format: str = DEFAULT_LOGGING_DATE_FORMAT, log_format: str = DEFAULT_LOGGING_FORMAT):
        """RQ's, with StoreScheduler for RQScheduler: take the scheduler's locks; start it (in burst mode, run it once)."""
        self.scheduler = StoreScheduler(self.queues, connection=self.connection, serializer=self.serializer,
                                        logging_level=logging_level if logging_level is not None else self.log.level,
                                        date_format=date_format, log_format=log_format)
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return  # another worker's scheduler has them
        if not burst:
            self.scheduler.start()
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()
        finally:
            self.scheduler.release_locks()
            self.scheduler.register_death()

    def stop_scheduler(self):
        """Stop the scheduler child as RQ does (SIGTERM, then wait), but wait SCHEDULER_STOP_GRACE s at most.

        RQ waits for it without a limit: a scheduler child that never exits would keep its worker's warm
        shutdown waiting until supervisord's SIGKILL, WORKER_GRACE (30 s) later. (A suspect when `ebookstore
        down` took 30 s on a busy machine, the worker and its idle scheduler SIGKILLed together; it happened
        again with this bound, so not the only cause.) StoreScheduler stops within a moment of
        SIGTERM: one still running after the grace is killed, and the worker's log says so. Its locks then
        expire in a minute (or `up` clears them). Called twice (a warm shutdown during a job, then the
        teardown), it signals nothing the second time: the PID may belong to another process by then.
        """
        process = self.scheduler._process if self.scheduler else None
        if process is None or not process.pid or process.exitcode is not None:
            return
        try:
            os.kill(process.pid, signal.SIGTERM)
        except OSError:
            pass
        process.join(self.SCHEDULER_STOP_GRACE)
        if process.is_alive():
            self.log.warning("Worker %s: its scheduler (PID %s) did not stop within %s s of SIGTERM: SIGKILL",
                             self.name, process.pid, self.SCHEDULER_STOP_GRACE)
            process.kill()
            process.join(2)

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            interval = min(interval, max(1, job.timeout - working_time))
        return int(interval) + self.HEARTBEAT_GRACE

    def clean_registries(self):
        """RQ's maintenance of each queue's registries, with two timings changed.

        - RQ's cleaning lock lives 15 minutes: a worker killed while holding it would
          stop all cleaning of that queue that long. Here it lives MAINTENANCE_LOCK_TTL s.
        - A worker moves a job from the queue to an "intermediate queue", then starts
          it. Killed in between, it strands the job there; RQ rescues such jobs after a
          minute, the store after INTERMEDIATE_GRACE seconds.
        """
        for queue in self.queues:
            if not self.connection.set(queue.registry_cleaning_key, 1, nx=True, ex=self.MAINTENANCE_LOCK_TTL):
                continue  # another worker is cleaning this queue right now
            try:
                self.log.debug("Worker %s: cleaning registries for queue: %s", self.name, queue.name)
                clean_registries(queue, self._exc_handlers)
                worker_registration.clean_worker_registry(queue)
                self._rescue_stranded(queue)
            finally:
                queue.release_maintenance_lock()
        self.last_cleaned_at = now()

    def _rescue_stranded(self, queue) -> None:
        intermediate = queue.intermediate_queue
        for job_id in intermediate.get_job_ids():
            if job_id in queue.started_job_registry:
                continue
            first_seen = intermediate.get_first_seen(job_id)
            if first_seen is None:
                intermediate.set_first_seen(job_id)
                continue
            if (now() - first_seen).total_seconds() < self.INTERMEDIATE_GRACE:
                continue
            job = queue.fetch_job(job_id)
            if job is not None:
                self.handle_job_failure(job, queue, exc_string="stranded between dequeue and start (its worker died)")
            intermediate.remove(job_id)


class WeightedWorker(StoreWorker):
    """A store worker that reads its queues in weighted random order (see queues.toml)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        weights = queues.load_config().weights
        # Queues missing from the file count with weight 1.
        self.queue_weights = [weights.get(q.name, 1) for q in self.queues]
        self.reorder_queues(reference_queue=None)

    def reorder_queues(self, reference_queue):
        self._ordered_queues = weighted_order(self.queues, self.queue_weights)


class SimpleWorker(CleanExit, RQSimpleWorker):
    """RQ's SimpleWorker (each job runs in the worker itself, no work-horse), ending as the store's workers do.

    RQ's own often took a second more to exit on a busy machine (its pubsub thread's race, see
    CleanExit.unsubscribe): a check that runs the learner's jobs in one waited for that (2 of 12 burst runs
    beside two busy loops; ex11's, each time its property check ran beside it: 0.16 s alone, 1.25 s then).
    """


def rq_executable() -> str:
    """The `rq` command of this Python environment (not whichever is first on PATH)."""
    return str(Path(sys.executable).parent / "rq")


def worker_argv(settings: Settings, name: str, queue_names: list[str] | None = None, *,
                weighted: bool = False, burst: bool = False, with_scheduler: bool = False,
                simple: bool = False, plain_rq: bool = False, extra: list[str] | None = None,
                exception_handler: str | None = "ebookstore.retries.discard_permanent") -> list[str]:
    """The `rq worker …` command line of a store worker.

    `name` appears in the command line, so `pgrep -f NAME` finds exactly this worker.
    The Redis URL does not: it carries the password, and `ps` shows command lines to
    every user. The worker reads it from RQ_REDIS_URL in its environment (Settings.to_env).
    `plain_rq`: RQ's own Worker with RQ's default timings (to show what the store improves).
    `simple`: the store's SimpleWorker (no work-horse: each job runs in the worker), with RQ's default timings.
    """
    if simple:
        worker_class = "ebookstore.workers.SimpleWorker"
    elif plain_rq:
        worker_class = "rq.Worker"
    else:
        worker_class = "ebookstore.workers.WeightedWorker" if weighted else "ebookstore.workers.StoreWorker"
    argv = [
        rq_executable(), "worker",
        *(queue_names or queues.load_config().names),
        "--serializer", "json",
        "--worker-class", worker_class,
        "--name", name,
    ]
    if exception_handler:  # the store's: a PermanentError is not retried (RQ has no built-in way to say so)
        argv += ["--exception-handler", exception_handler]
    if not (simple or plain_rq):
        argv += [
            "--job-monitoring-interval", "1",  # renew a running job's heartbeat every second
            "--maintenance-interval", "2",     # look for abandoned jobs every 2 s (RQ: 600)
            "--worker-ttl", "17",              # an idle worker wakes every 2 s (worker-ttl − 15) to do so
        ]
    if burst:
        argv.append("--burst")
    if with_scheduler:
        argv.append("--with-scheduler")
    return argv + list(extra or [])
