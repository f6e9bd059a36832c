"""Exercise 01 — why background jobs: time a purchase that sends its emails inline.

Notebook: notebooks/01_why_background_jobs.ipynb · check: check("ex01") or `ebookstore check ex01`
"""
import time

from ebookstore import mail, reports, store
from ebookstore.config import Settings


def stopwatch(func, *args, **kwargs) -> tuple[object, float]:
    """Call `func(*args, **kwargs)` and return the tuple (its result, the seconds it took).

    Use a monotonic clock made for measuring durations (time.perf_counter):
    the wall clock (time.time) jumps when the computer's clock is set.
    """
    started = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - started


def inline_purchase(conn, settings: Settings, buyer_id: int, ebook_id: int) -> dict:
    """Chapter III's purchase: record it, then send its three emails before returning.

    Record the purchase with `store.buy`, then deliver the receipt, the
    commission email and the ebook statistics email with `mail.deliver` and the
    settings given (builders are in ebookstore.mail, the statistics in
    ebookstore.reports: read them after the purchase is recorded, so that they
    count it). Return the purchase. The buyer waits for every email: that is the problem.
    """
    purchase = store.buy(conn, buyer_id, ebook_id)
    stats = reports.ebook_statistics(conn, ebook_id)
    for message in (mail.receipt_email(purchase), mail.commission_email(purchase),
                    mail.ebook_statistics_email(purchase, stats)):
        mail.deliver(message, settings)
    return purchase
