"""The store's background jobs: module-level functions that workers import (RQ's, Celery's or Dramatiq's).

RQ stores a job as the import path of its function plus its arguments, so a
job function must live in an importable module (never a notebook's
`__main__`), and its arguments must be primitives: the purchase *id*, not the
purchase. The worker loads fresh data when the job runs.

Sidekiq name            here
PurchaseNotificationJob purchase_notification(purchase_id)
StatisticsReportJob     statistics_report(period)
DailyStatisticsJob      daily_statistics()

They are enqueued through the queue adapter (backends/): EBOOKSTORE_QUEUE_BACKEND picks who runs them.
"""
from __future__ import annotations

import sqlite3
from contextlib import closing

from redis import Redis
from redis.exceptions import RedisError

from . import backends, claims, mail, outbox, queues, reports, store
from .config import Settings
from .retries import STORE_RETRY, PermanentError


def purchase_notification(purchase_id: int) -> dict:
    """Send every email of one purchase: receipt, commission, ebook statistics.

    Idempotent: an email already delivered (its key is in the deliveries table)
    is skipped, so a second run — a retry, a recovery after a killed worker —
    sends nothing twice. Two runs at the same time are safe too: each email is
    claimed before it is sent, and only one run can hold the claim (claims.py).
    Maildir delivery is idempotent by key as well (mail.deliver), which covers a
    kill between delivering and recording; over SMTP that gap cannot be closed.

    Returns {"purchase_id": purchase_id, "sent": the keys of the emails this run sent}.
    Raises PermanentError if there is no such purchase.
    """
    settings = Settings.from_env()
    with closing(store.connect(settings.database_path)) as conn:
        purchase = store.get_purchase(conn, purchase_id)
        if purchase is None:  # e.g. a job left over from a store that was reset
            raise PermanentError(f"no purchase with id {purchase_id}")
        stats = reports.ebook_statistics(conn, purchase["ebook_id"])
        messages = [
            mail.receipt_email(purchase),
            mail.commission_email(purchase),
            mail.ebook_statistics_email(purchase, stats),
        ]
        sent = [message["X-Ebookstore-Key"] for message in messages
                if claims.deliver_once(conn, message, settings)]
        outbox.complete(conn, notification_job_id(purchase_id))
    return {"purchase_id": purchase_id, "sent": sent}


def statistics_report(period: str = "daily") -> dict:
    """Email the sales statistics of the last day or week (period "daily" or "weekly") to the store's reports
    address; return the report (what reports.sales_statistics returns)."""
    settings = Settings.from_env()
    since, until = reports.period_bounds(period)
    with closing(store.connect(settings.database_path)) as conn:
        report = reports.sales_statistics(conn, since, until)
    mail.deliver(mail.statistics_report_email(period, report), settings)
    return report


def daily_statistics() -> dict:
    """Total sales, popular ebooks and active sellers of the last 24 h (run by cron)."""
    return statistics_report("daily")


def notification_job_id(purchase_id: int) -> str:
    """The fixed job id of a purchase's notification job: enqueued twice, it is still one job."""
    return f"purchase-{purchase_id}-notification"


def enqueue_purchase_notifications(connection: Redis | None, purchase_id: int,
                                   config: queues.QueueConfig | None = None, backend=None) -> list[str]:
    """Enqueue the jobs of one committed purchase (on RQ: in a single Redis round trip); their ids.

    `backend`: the queue adapter's backend (default: EBOOKSTORE_QUEUE_BACKEND's, on `connection` for RQ).
    """
    config = config or queues.load_config()
    backend = backend or backends.get(connection=connection)
    return backend.enqueue([backends.Call(f"{__name__}.purchase_notification", (purchase_id,),
                                          job_id=notification_job_id(purchase_id),
                                          queue=config.queue_for(purchase_notification), retry=STORE_RETRY)])


def buy_and_notify(conn, connection: Redis | None, buyer_id, ebook_id, logger=None, backend=None) -> dict:
    """The purchase flow: one transaction that also records the emails' job in the outbox; after
    COMMIT the job is enqueued (one Redis round trip) and marked so in the outbox.

    Returns the purchase with the ids of the queued jobs under "jobs" (empty if
    Redis is unreachable: the relay enqueues the job once Redis is back).
    `backend`: who runs the job (default: EBOOKSTORE_QUEUE_BACKEND's, on `connection` for RQ); with
    the inline backend the emails are sent here, before this returns.
    """
    config = queues.load_config()
    backend = backend or backends.get(connection=connection)
    queued: list[str] = []

    def write_outbox(conn, purchase_id):
        outbox.record(conn, notification_job_id(purchase_id), f"{__name__}.purchase_notification",
                      [purchase_id], config.queue_for(purchase_notification))

    def enqueue_emails(purchase):
        job_id = notification_job_id(purchase["id"])
        try:
            enqueue_purchase_notifications(connection, purchase["id"], config, backend)
        except RedisError as error:
            if logger:
                logger.warning("purchase %s: Redis unavailable (%s); the relay will enqueue its emails",
                               purchase["id"], error)
            try:
                outbox.hand_over(conn, job_id)  # the relay need not wait for this request: it has given up
            except sqlite3.Error:  # a shortcut only (the relay takes the row after its grace): the purchase stands
                pass
            return
        outbox.mark_enqueued(conn, job_id)
        queued.append(job_id)

    purchase = store.buy(conn, buyer_id, ebook_id, in_transaction=write_outbox, after_commit=enqueue_emails)
    return {**purchase, "jobs": queued}
