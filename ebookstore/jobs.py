"""The store's background jobs: module-level functions that RQ workers import.

RQ stores a job as the import path of its function plus its arguments, so a
job function must live in an importable module (never a notebook's
`__main__`), and its arguments must be primitives: the purchase *id*, not the
purchase. The worker loads fresh data when the job runs.

Sidekiq name            here
PurchaseNotificationJob purchase_notification(purchase_id)
StatisticsReportJob     statistics_report(period)
DailyStatisticsJob      daily_statistics()
"""
from __future__ import annotations

from contextlib import closing

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from . import mail, queues, reports, store
from .config import Settings


def purchase_notification(purchase_id: int) -> dict:
    """Send every email of one purchase: receipt, commission, ebook statistics."""
    settings = Settings.from_env()
    with closing(store.connect(settings.database_path)) as conn:
        purchase = store.get_purchase(conn, purchase_id)
        if purchase is None:  # e.g. a job left over from a store that was reset
            raise LookupError(f"no purchase with id {purchase_id}")
        stats = reports.ebook_statistics(conn, purchase["ebook_id"])
    messages = [
        mail.receipt_email(purchase),
        mail.commission_email(purchase),
        mail.ebook_statistics_email(purchase, stats),
    ]
    for message in messages:
        mail.deliver(message, settings)
    return {"purchase_id": purchase_id, "sent": [m["X-Ebookstore-Key"] for m in messages]}


def statistics_report(period: str = "daily") -> dict:
    """Email the sales statistics of the last day or week to the store's reports address."""
    settings = Settings.from_env()
    since, until = reports.period_bounds(period)
    with closing(store.connect(settings.database_path)) as conn:
        report = reports.sales_statistics(conn, since, until)
    mail.deliver(mail.statistics_report_email(period, report), settings)
    return report


def daily_statistics() -> dict:
    """Total sales, popular ebooks and active sellers of the last 24 h (run by cron)."""
    return statistics_report("daily")


def enqueue_purchase_notifications(connection: Redis, purchase_id: int,
                                   config: queues.QueueConfig | None = None) -> list:
    """Enqueue the jobs of one committed purchase in a single Redis round trip."""
    config = config or queues.load_config()
    queue = queues.get_queue(config.queue_for(purchase_notification), connection)
    with connection.pipeline() as pipe:
        jobs = queue.enqueue_many(
            [Queue.prepare_data(purchase_notification, args=(purchase_id,),
                                description=f"purchase_notification({purchase_id})")],
            pipeline=pipe,
        )
        pipe.execute()
    return jobs


def buy_and_notify(conn, connection: Redis, buyer_id, ebook_id, logger=None) -> dict:
    """The purchase flow: one transaction, then (after COMMIT) its jobs are enqueued.

    Returns the purchase with the ids of the queued jobs under "jobs". If Redis
    is unreachable the purchase still stands; its emails are not queued.
    """
    queued: list[str] = []

    def enqueue_emails(purchase):
        try:
            queued.extend(job.id for job in enqueue_purchase_notifications(connection, purchase["id"]))
        except RedisError as error:
            if logger:
                logger.error("purchase %s: emails not queued: %s", purchase["id"], error)

    purchase = store.buy(conn, buyer_id, ebook_id, after_commit=enqueue_emails)
    return {**purchase, "jobs": queued}
