"""Checks of exercise 11: DailyStatisticsJob's figures on a seeded store, and its cron registration.

The seeded sales are chosen so that the plausible wrong answers give other
figures: `until` lies three days back (an answer that uses the current time
counts other sales), a sale lies exactly on each edge of the window (one counts,
one does not), and ordering by revenue or by id ranks the ebooks and the
sellers differently from ordering by the number of sales.
"""
from contextlib import closing
from datetime import datetime, timedelta, timezone

from croniter import croniter
from rq import cron
from rq.cron import CronJob

from ebookstore import queues
from ebookstore.course.checks.common import Fail, job_outcome

UNTIL_AGO = timedelta(days=3)
# (ebook id, hours before `until`): ebooks 1 "Background Jobs in Practice" ($19) and 2 "Redis for the
# Impatient" ($12) are Cleo's, 3 "Signals, Processes and You" ($15) and 4 "The Little Book of Queues" ($9) Dev's.
IN_WINDOW = [(4, 1), (4, 2), (4, 3), (4, 23.5), (3, 4), (3, 5), (3, 6), (1, 7), (1, 8),
             (2, 0)]  # exactly at `until`: counts
OUTSIDE = [(1, 24),  # exactly 24 h before `until`: does not count
           (1, 25), (1, 30), (1, 47), (1, 48), (3, 49),
           (1, -60), (3, -65)]  # after `until`: in the 24 hours before now
SALES = IN_WINDOW + OUTSIDE
EXPECTED = {"total_sales": 10, "revenue_cents": 4 * 900 + 3 * 1500 + 2 * 1900 + 1200,
            "popular_ebooks": ["The Little Book of Queues", "Signals, Processes and You", "Background Jobs in Practice"],
            "active_sellers": ["Dev Author", "Cleo Author"]}


def _seed(ctx, until: datetime) -> None:
    with closing(ctx.db()) as conn:
        for ebook_id, hours in SALES:
            conn.execute(
                "INSERT INTO purchases (buyer_id, ebook_id, price_cents, commission_cents, created_at) "
                "SELECT 1, id, price_cents, price_cents * 4 / 5, ? FROM ebooks WHERE id = ?",
                ((until - timedelta(hours=hours)).isoformat(timespec="milliseconds"), ebook_id))


def computes_the_daily_figures(ctx):
    """daily_statistics, run by a worker, counts the last 24 hours right"""
    until = (datetime.now(timezone.utc) - UNTIL_AGO).replace(microsecond=0)
    _seed(ctx, until)
    job = queues.get_queue("low", ctx.redis).enqueue(ctx.learner("daily_statistics"), until.isoformat())
    ctx.stack.worker("worker", ["low"], burst=True, simple=True).wait(timeout=10)
    if job.get_status(refresh=True) != "finished":
        raise Fail(job_outcome(job, ctx.stack.log("worker", 200)))
    got = job.return_value()
    if not isinstance(got, dict):
        raise Fail(f"return a dict; got {str(got)[:80]}")
    for key, value in EXPECTED.items():
        if got.get(key) != value:
            raise Fail(f"{key} is {str(got.get(key))[:120]}; on the check's store it is {value!r}. {_why(key, got)}")


def _why(key: str, got: dict) -> str:
    """What the wrong figure suggests, in the learner's terms."""
    total = got.get("total_sales")
    if total == sum(1 for _, hours in SALES if -72 < hours <= -48):
        return "You counted the 24 hours before now: count those before the `until` you were given"
    if key in ("total_sales", "revenue_cents"):
        return ("Mind the window's edges: a purchase made exactly at until counts, one made exactly 24 h before it "
                "does not; compare ISO texts written the same way (UTC, ending in +00:00)")
    if key == "popular_ebooks":
        return "The three ebooks with the most purchases in the window, most purchases first (not the most revenue)"
    if key == "active_sellers":
        return "The sellers who sold in the window, the one with the most sales first"
    return "Only purchases of the 24 hours before `until` count"  # not reached: every key is handled above


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
    if job.cron:
        runs = croniter(job.cron, datetime.now(timezone.utc))
        times = [runs.get_next(datetime) for _ in range(15)]  # two weeks and more of a daily schedule
        if max(b - a for a, b in zip(times, times[1:])) > timedelta(days=1, minutes=1):
            raise Fail(f"the schedule {job.cron!r} leaves more than a day between runs: it must run every day "
                       "(read the five cron fields: minute hour day-of-month month day-of-week)")


CHECKS = [computes_the_daily_figures, registers_with_cron]
