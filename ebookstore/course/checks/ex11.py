"""Checks of exercise 11: DailyStatisticsJob's figures on a seeded store, and its cron registration.

The seeded sales are chosen so that the plausible wrong answers give other
figures: `until` lies three days back (an answer that uses the current time
counts other sales), a sale lies exactly on each edge of the window (one counts,
one does not), and ordering by revenue or by id ranks the ebooks and the
sellers differently from ordering by the number of sales.

daily_statistics is then tried in the grader's process on windows hypothesis generates
(any UTC offset for `until`, milliseconds, sales on and next to the edges, empty windows,
fewer than three ebooks sold), its figures compared with the ones computed here from the
sales themselves; with no `until`, under a time zone other than UTC; and the cron schedule
must fire at 06:00, every day.
"""
from collections import Counter
from contextlib import closing
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st

from croniter import croniter
from rq import cron
from rq.cron import CronJob

from ebookstore import queues
from ebookstore.course.checks.common import Fail, job_outcome, local_time_zone, run_worker

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
    log = run_worker(ctx, "worker", ["low"])
    if job.get_status(refresh=True) != "finished":
        raise Fail(job_outcome(job, log))
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


DAY_MS = 86_400_000


def _catalogue(ctx) -> dict[int, tuple[str, int, str]]:
    """ebook id -> (title, price in cents, seller's name)."""
    with closing(ctx.db()) as conn:
        rows = conn.execute("SELECT e.id, e.title, e.price_cents, u.name FROM ebooks e "
                            "JOIN users u ON u.id = e.seller_id").fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def _replace_sales(ctx, sales: list[tuple[int, datetime]]) -> None:
    with closing(ctx.db()) as conn:
        conn.execute("DELETE FROM purchases")
        conn.executemany(
            "INSERT INTO purchases (buyer_id, ebook_id, price_cents, commission_cents, created_at) "
            "SELECT 1, id, price_cents, price_cents * 4 / 5, ? FROM ebooks WHERE id = ?",
            [(when.astimezone(timezone.utc).isoformat(timespec="milliseconds"), ebook) for ebook, when in sales])


def _ranked(got, counts: Counter, limit: int | None) -> bool:
    """True if `got` lists the most counted names, most first, as many as `limit` (ties in any order)."""
    expected = len(counts) if limit is None else min(limit, len(counts))
    if not isinstance(got, list) or len(got) != expected or len(set(got)) != len(got) or set(got) - set(counts):
        return False
    mine = [counts[name] for name in got]
    rest = [n for name, n in counts.items() if name not in got]
    return mine == sorted(mine, reverse=True) and (not rest or min(mine) >= max(rest))


def _judge(ctx, got, sales, catalogue, until: datetime) -> str | None:
    """What is wrong with `got` for these sales (None if nothing), in the learner's terms."""
    inside = [ebook for ebook, when in sales if until - timedelta(days=1) < when <= until]
    titles = Counter(catalogue[e][0] for e in inside)
    sellers = Counter(catalogue[e][2] for e in inside)
    if not isinstance(got, dict):
        return f"return a dict; got {str(got)[:80]}"
    if got.get("total_sales") != len(inside):
        return f"total_sales is {got.get('total_sales')!r}; it should be {len(inside)}"
    revenue = sum(catalogue[e][1] for e in inside)
    if got.get("revenue_cents") != revenue:
        return f"revenue_cents is {got.get('revenue_cents')!r}; it should be {revenue}"
    if not _ranked(got.get("popular_ebooks"), titles, 3):
        return (f"popular_ebooks is {got.get('popular_ebooks')!r}; the sales per title are {dict(titles)}: "
                "the (up to) three most sold, most sold first")
    if not _ranked(got.get("active_sellers"), sellers, None):
        return (f"active_sellers is {got.get('active_sellers')!r}; the sales per seller are {dict(sellers)}: "
                "every seller who sold, most sales first")
    return None


_OFFSETS = st.integers(-12 * 4, 14 * 4).map(lambda quarters: timezone(timedelta(minutes=15 * quarters)))
_UNTILS = st.datetimes(min_value=datetime(2025, 1, 2), max_value=datetime(2027, 12, 30)).map(
    lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000, tzinfo=timezone.utc))
_BEFORE = st.one_of(st.sampled_from([0, 1, -1, DAY_MS, DAY_MS - 1, DAY_MS + 1]),  # on and next to the edges
                    st.integers(-DAY_MS, 2 * DAY_MS))  # ms before `until`


def daily_figures_for_any_window(ctx):
    """daily_statistics is right for any `until`: other time zones, milliseconds, edges, empty windows"""
    daily_statistics = ctx.learner("daily_statistics")
    catalogue = _catalogue(ctx)
    ebooks = sorted(catalogue)
    failures = []

    @settings(max_examples=40, deadline=None, database=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @example(until=datetime(2026, 3, 1, 6, 0, 0, 250000, tzinfo=timezone.utc), offset=timezone(timedelta(hours=5, minutes=30)),
             sales=[(4, 0), (4, 1), (3, DAY_MS), (3, DAY_MS - 1), (1, -1), (2, 5 * 3_600_000)])
    @example(until=datetime(2026, 3, 1, 6, 0, 0, tzinfo=timezone.utc), offset=timezone(timedelta(hours=-7)),
             sales=[(1, DAY_MS + 3_600_000), (2, -3_600_000)])  # no sale in the window
    @given(until=_UNTILS, offset=_OFFSETS, sales=st.lists(st.tuples(st.sampled_from(ebooks), _BEFORE), max_size=12))
    def any_window(until, offset, sales):
        if failures:
            return
        when = [(ebook, until - timedelta(milliseconds=ms)) for ebook, ms in sales]
        _replace_sales(ctx, when)
        text = until.astimezone(offset).isoformat(timespec="milliseconds")
        got = daily_statistics(text)
        wrong = _judge(ctx, got, when, catalogue, until)
        if wrong:
            failures.append((text, len(sales), wrong))

    any_window()
    if failures:
        text, n, wrong = failures[0]
        raise Fail(f"with until={text!r} and {n} sales around it, {wrong}. Convert `until` to UTC and write both "
                   "edges as the stored times are written (UTC, milliseconds), or compare datetimes")


def counts_until_now_by_default(ctx):
    """daily_statistics() with no `until` counts the 24 hours before now, whatever the local time zone"""
    daily_statistics = ctx.learner("daily_statistics")
    catalogue = _catalogue(ctx)
    now = datetime.now(timezone.utc)
    sales = [(4, now - timedelta(hours=1)), (3, now - timedelta(hours=23, minutes=30)),
             (1, now - timedelta(hours=25)), (2, now - timedelta(hours=30))]
    _replace_sales(ctx, sales)
    with local_time_zone("IST-05:30"):  # a local clock 5 h 30 ahead of UTC (a POSIX rule: no tz database needed)
        got = daily_statistics()
    wrong = _judge(ctx, got, sales, catalogue, datetime.now(timezone.utc))
    if wrong:
        raise Fail(f"called with no `until`, on a machine whose clock is not on UTC: {wrong}. Default to now in "
                   "UTC (datetime.now(timezone.utc)), not the local time")


def registers_with_cron(ctx):
    """register_periodic registers daily_statistics on "low", every day at 06:00"""
    cron._job_data_registry.clear()
    try:
        ctx.learner("register_periodic")()
        registered = list(cron._job_data_registry)
    finally:
        cron._job_data_registry.clear()
    def name(func):
        return func if isinstance(func, str) else f"{getattr(func, '__module__', '')}.{getattr(func, '__name__', '')}"

    mine = [d for d in registered if name(d["func"]).endswith(".daily_statistics")]
    if len(mine) != 1:
        raise Fail(f"register daily_statistics once with rq.cron.register; {len(mine)} registrations of it found")
    data = mine[0]
    if name(data["func"]) != f"{ctx.module.__name__}.daily_statistics":
        raise Fail(f"you registered {name(data['func'])}, not your own daily_statistics of this exercise file")
    if data["queue_name"] != "low":
        raise Fail(f"it runs on {data['queue_name']!r}: statistics can wait, put them on 'low'")
    job = CronJob(queue_name=data["queue_name"], func=data["func"], interval=data["interval"], cron=data["cron"])
    if not job.cron:
        raise Fail(f"an interval of {job.interval} s runs it every so often from whenever cron starts, not at 06:00: "
                   "give a cron expression (cron='minute hour day month weekday')")
    runs = croniter(job.cron, datetime(2026, 3, 2, 7, 0))  # a Monday, after 06:00 (cron reads the local clock)
    times = [runs.get_next(datetime) for _ in range(10)]
    expected = [datetime(2026, 3, 3 + n, 6, 0) for n in range(10)]
    if times != expected:
        raise Fail(f"the schedule {job.cron!r} runs at {', '.join(t.strftime('%a %H:%M') for t in times[:3])} …; "
                   "it must run every day at 06:00 (the five cron fields: minute hour day-of-month month day-of-week)")


CHECKS = [computes_the_daily_figures, daily_figures_for_any_window, counts_until_now_by_default, registers_with_cron]
