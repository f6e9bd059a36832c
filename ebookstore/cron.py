"""The cron process: `ebookstore cron` enqueues the jobs of cron_config.py when they are due.

It is RQ's CronScheduler with one change: `rq cron` enqueues with RQ's
default (pickle) serializer, and the store's workers read JSON, so this
scheduler enqueues through the store's JSON queues. Scheduling, registration
and the scheduler registry stay RQ's. Run one cron process per Redis, or each
job is enqueued once per cron process.
"""
from __future__ import annotations

import logging

from rq.cron import CronScheduler, now

from . import queues
from .config import Settings

CONFIG_MODULE = "ebookstore.cron_config"


class JSONCronScheduler(CronScheduler):
    """RQ's CronScheduler, enqueueing through JSON-serialized queues."""

    def enqueue_jobs(self):
        enqueue_time, enqueued = now(), []
        for cron_job in self._cron_jobs:
            if cron_job.should_run():
                queue = queues.get_queue(cron_job.queue_name, self.connection)
                with self.connection.pipeline() as pipe:
                    job = queue.enqueue(cron_job.func, args=cron_job.args, kwargs=cron_job.kwargs,
                                        pipeline=pipe, **cron_job.job_options)
                    pipe.zadd(cron_job.job_history_key, {job.id: enqueue_time.timestamp()})
                    pipe.execute()
                cron_job.set_enqueue_time(enqueue_time)
                enqueued.append(cron_job)
        return enqueued


def run(settings: Settings | None = None) -> None:
    """Run the cron scheduler in the foreground until SIGTERM or Ctrl-C."""
    scheduler = JSONCronScheduler(connection=queues.connect(settings), logging_level=logging.INFO)
    scheduler.load_config_from_file(CONFIG_MODULE)
    scheduler.start()


if __name__ == "__main__":
    run()
