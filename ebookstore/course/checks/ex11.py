"""Checks of exercise 11: DailyStatisticsJob's figures on a seeded store, and its cron registration."""
from contextlib import closing
from datetime import datetime, timedelta, timezone

from rq import cron
from rq.cron import CronJob

from ebookstore import queues
from ebookstore.course.checks.common import Fail

# (ebook id, hours ago): ebook 1 and 2 are Cleo's, 3 and 4 Dev's
SALES = [(1, 1), (1, 2), (1, 23), (3, 3), (3, 5), (2, 6), (4, 25), (4, 30), (4, 47), (4, 48), (4, 49)]


def _seed(ctx, until: datetime) -> None:
    with closing(ctx.db()) as conn:
        for ebook_id, hours in SALES:
            conn.execute(
                "INSERT INTO purchases (buyer_id, ebook_id, price_cents, commission_cents, created_at) "
                "SELECT 1, id, price_cents, price_cents * 4 / 5, ? FROM ebooks WHERE id = ?",
                ((until - timedelta(hours=hours)).isoformat(timespec="milliseconds"), ebook_id))


def computes_the_daily_figures(ctx):
    """daily_statistics, run by a worker, counts the last 24 hours right"""
    until = datetime.now(timezone.utc).replace(microsecond=0)
    _seed(ctx, until)
    job = queues.get_queue("low", ctx.redis).enqueue(ctx.learner("daily_statistics"), until.isoformat())
    ctx.stack.worker("worker", ["low"], burst=True, simple=True).wait(timeout=10)
    job.refresh()
    if job.get_status() != "finished":
        raise Fail(f"the job {job.get_status().value}; the worker's log ends:\n{ctx.stack.log('worker')[-500:]}")
    got = job.return_value()
    expected = {"total_sales": 6, "revenue_cents": 3 * 1900 + 2 * 1500 + 1200,
                "popular_ebooks": ["Background Jobs in Practice", "Signals, Processes and You", "Redis for the Impatient"],
                "active_sellers": ["Cleo Author", "Dev Author"]}
    if not isinstance(got, dict):
        raise Fail(f"return a dict; got {got!r}")
    for key, value in expected.items():
        if got.get(key) != value:
            raise Fail(f"{key} is {got.get(key)!r}; on the check's store it is {value!r} "
                       "(only purchases of the 24 hours before `until` count)")


def registers_with_cron(ctx):
    """register_periodic registers daily_statistics on "low", at least daily"""
    cron._job_data_registry.clear()
    try:
        ctx.learner("register_periodic")()
        registered = list(cron._job_data_registry)
    finally:
        cron._job_data_registry.clear()
    mine = [d for d in registered if getattr(d["func"], "__name__", "") == "daily_statistics"]
    if len(mine) != 1:
        raise Fail(f"register daily_statistics once with rq.cron.register; {len(registered)} registrations found")
    data = mine[0]
    if data["queue_name"] != "low":
        raise Fail(f"it runs on {data['queue_name']!r}: statistics can wait, put them on 'low'")
    job = CronJob(queue_name=data["queue_name"], func=data["func"], interval=data["interval"], cron=data["cron"])
    if job.interval and job.interval > 86400:
        raise Fail("it must run at least once a day")
    if job.cron and (job.next_enqueue_time - datetime.now(timezone.utc).astimezone()) > timedelta(days=1):
        raise Fail(f"the schedule {job.cron!r} does not come every day")


CHECKS = [computes_the_daily_figures, registers_with_cron]
