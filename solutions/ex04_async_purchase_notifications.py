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
    settings = Settings.from_env()
    with closing(store.connect(settings.database_path)) as conn:
        purchase = store.get_purchase(conn, purchase_id)
        stats = reports.ebook_statistics(conn, purchase["ebook_id"])
    messages = [mail.receipt_email(purchase), mail.commission_email(purchase),
                mail.ebook_statistics_email(purchase, stats)]
    for message in messages:
        mail.deliver(message, settings)
    return [m["X-Ebookstore-Key"] for m in messages]


def buy(conn, redis: Redis, buyer_id: int, ebook_id: int) -> dict:
    """The purchase flow: record the purchase in one transaction, then enqueue the job.

    Enqueue `purchase_notification(purchase id)` on the "critical" queue
    (JSON serializer) only once the transaction has committed, and return
    the purchase at once. A purchase that fails enqueues nothing.
    """
    critical = Queue("critical", connection=redis, serializer=JSONSerializer)
    return store.buy(conn, buyer_id, ebook_id,
                     after_commit=lambda purchase: critical.enqueue(purchase_notification, purchase["id"]))


def schedule_statistics_report(redis: Redis, period: str, at: datetime) -> Job:
    """Schedule Sidekiq's StatisticsReportJob: ebookstore.jobs.statistics_report(period) at `at`, on "low".

    JSON-serialized, like every store queue. `at` is an aware datetime, in any time zone: keep its zone
    (RQ reads a naive datetime as the machine's local time).
    """
    from ebookstore import jobs
    return Queue("low", connection=redis, serializer=JSONSerializer).enqueue_at(at, jobs.statistics_report, period)
