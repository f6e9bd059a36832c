"""Exercise 11 — final integration: Sidekiq's DailyStatisticsJob, scheduled with RQ's cron.

Notebook: notebooks/11_final_integration.ipynb · check: check("ex11") or `ebookstore check ex11`
"""
from contextlib import closing
from datetime import datetime, timedelta, timezone

from rq import cron

from ebookstore import store
from ebookstore.config import Settings


def daily_statistics(until: str | None = None) -> dict:
    """The job: statistics of the 24 hours before `until` (default: now).

    `until` is an ISO time with its UTC offset, in any time zone ("2026-03-01T07:00:00.250+01:00").
    Count the purchases made after until − 24 h and at or before until, from
    the store's database (Settings.from_env().database_path). Return
    {"total_sales": number of purchases, "revenue_cents": their total price,
     "popular_ebooks": the titles of the 3 best-selling ebooks (fewer if fewer sold), most sold first,
     "active_sellers": the names of the sellers who sold anything, most sales first}
    — 0, 0, [], [] for a window with no sales.
    Purchases' created_at are ISO strings in UTC with milliseconds ("2026-03-01T06:00:00.250+00:00"):
    they compare as text with times written the same way. ebookstore.reports (period_bounds,
    sales_statistics) does most of this.
    """
    raise NotImplementedError  # your code here


def register_periodic() -> None:
    """Register daily_statistics with RQ's cron (rq.cron.register): on queue "low", every day at 06:00."""
    raise NotImplementedError  # your code here
