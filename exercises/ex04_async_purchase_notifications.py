"""Exercise 04 — async purchase notifications: the purchase commits, a job sends the emails.

Notebook: notebooks/04_async_purchase_notifications.ipynb · check: check("ex04") or `ebookstore check ex04`
"""
from contextlib import closing
from datetime import datetime

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from ebookstore import mail, reports, store
from ebookstore.config import Settings


def purchase_notification(purchase_id: int) -> list[str]:
    """The job (Sidekiq's PurchaseNotificationJob): send every email of one purchase.

    Load the purchase by id (store.get_purchase), deliver the receipt, the
    commission email and the ebook statistics email (ebookstore.mail; the
    statistics read now, so that they count this purchase), and return the
    three emails' "X-Ebookstore-Key" headers. Let a delivery error reach the
    worker: the job then fails, and RQ can retry it.
    """
    raise NotImplementedError  # your code here


def buy(conn, redis: Redis, buyer_id: int, ebook_id: int) -> dict:
    """The purchase flow: record the purchase in one transaction, then enqueue the job.

    Enqueue `purchase_notification(purchase id)` on the "critical" queue
    (JSON serializer) only once the transaction has committed, and return
    the purchase at once. A purchase that fails enqueues nothing.
    """
    raise NotImplementedError  # your code here


def schedule_statistics_report(redis: Redis, period: str, at: datetime) -> Job:
    """Schedule Sidekiq's StatisticsReportJob: ebookstore.jobs.statistics_report(period) at `at`, on "low".

    JSON-serialized, like every store queue. `at` is an aware datetime, in any time zone: keep its zone
    (RQ reads a naive datetime as the machine's local time).
    """
    raise NotImplementedError  # your code here
