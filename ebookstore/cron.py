"""The cron process: `ebookstore cron` enqueues the jobs of cron_config.py when they are due.

It is RQ's CronScheduler with one change: `rq cron` enqueues with RQ's
default (pickle) serializer, and the store's workers read JSON, so this
scheduler enqueues through the queue adapter (backends/): on RQ's JSON queues,
or on Celery's or Dramatiq's when EBOOKSTORE_QUEUE_BACKEND says so. Scheduling,
registration and the scheduler registry stay RQ's (in Redis, whatever the
backend). Run one cron process per Redis, or each job is enqueued once per cron process.
"""
from __future__ import annotations

import logging

from rq.cron import CronScheduler, now

from . import backends, queues
from .config import Settings

CONFIG_MODULE = "ebookstore.cron_config"


class JSONCronScheduler(CronScheduler):
    """RQ's CronScheduler, enqueueing through the queue adapter (RQ: JSON-serialized queues)."""

    backend = None  # the queue adapter's backend: set by run()

    def enqueue_jobs(self):
        enqueue_time, enqueued = now(), []
        backend = self.backend or backends.get(connection=self.connection)
        for cron_job in self._cron_jobs:
            if cron_job.should_run():
                options = dict(cron_job.job_options)
                if "job_timeout" in options:
                    options["timeout"] = options.pop("job_timeout")
                call = backends.Call(cron_job.func_name, tuple(cron_job.args or ()), dict(cron_job.kwargs or {}),
                                     queue=cron_job.queue_name, rq_options=options)
                with self.connection.pipeline() as pipe:
                    job_id, = backend.enqueue([call], pipeline=pipe)
                    pipe.zadd(cron_job.job_history_key, {job_id: enqueue_time.timestamp()})
                    pipe.execute()
                cron_job.set_enqueue_time(enqueue_time)
                enqueued.append(cron_job)
        return enqueued


def run(settings: Settings | None = None) -> None:
    """Run the cron scheduler in the foreground until SIGTERM or Ctrl-C."""
    settings = settings or Settings.from_env()
    scheduler = JSONCronScheduler(connection=queues.connect(settings), logging_level=logging.INFO)
    scheduler.backend = backends.get(settings, scheduler.connection)
    scheduler.load_config_from_file(CONFIG_MODULE)
    scheduler.start()


if __name__ == "__main__":
    run()
