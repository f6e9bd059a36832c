"""Exercise 11 — final integration: Sidekiq's DailyStatisticsJob, scheduled with RQ's cron.

Notebook: notebooks/11_final_integration.ipynb · check: check("ex11") or `ebookstore check ex11`
"""
from contextlib import closing
from datetime import datetime, timedelta, timezone

from rq import cron

from ebookstore import store
from ebookstore.config import Settings


def daily_statistics(until: str | None = None) -> dict:
    """The job: statistics of the 24 hours before `until` (an ISO time; default now, UTC).

    Count the purchases made after until − 24 h and at or before until, from
    the store's database (Settings.from_env().database_path). Return
    {"total_sales": number of purchases, "revenue_cents": their total price,
     "popular_ebooks": the titles of the 3 best-selling ebooks, most sold first,
     "active_sellers": the names of the sellers who sold anything, most sales first}.
    Purchases' created_at are ISO strings in UTC, so they compare as text.
    """
    raise NotImplementedError  # your code here


def register_periodic() -> None:
    """Register daily_statistics with RQ's cron (rq.cron.register): on queue "low", every day at 06:00."""
    raise NotImplementedError  # your code here
