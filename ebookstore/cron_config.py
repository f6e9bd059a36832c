"""The store's periodic jobs, in RQ's cron configuration format.

Loaded by `ebookstore cron` (see cron.py). Each `cron.register` line is one
periodic job: which function, on which queue, how often. The cron process
enqueues a job when it is due; a worker runs it.
"""
import os

from rq import cron

from ebookstore import jobs, queues

queue_of = queues.load_config().queue_for

# Sidekiq's DailyStatisticsJob, every day at 06:00 (local time, cron syntax).
# EBOOKSTORE_DAILY_INTERVAL=N runs it every N seconds instead, so a notebook
# can watch it happen.
if os.environ.get("EBOOKSTORE_DAILY_INTERVAL"):
    cron.register(jobs.daily_statistics, queue_of(jobs.daily_statistics),
                  interval=int(os.environ["EBOOKSTORE_DAILY_INTERVAL"]))
else:
    cron.register(jobs.daily_statistics, queue_of(jobs.daily_statistics), cron="0 6 * * *")

# A weekly report, Mondays at 07:00.
cron.register(jobs.statistics_report, queue_of(jobs.statistics_report),
              kwargs={"period": "weekly"}, cron="0 7 * * 1")
