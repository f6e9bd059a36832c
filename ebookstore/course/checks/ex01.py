"""Checks of exercise 01: a stopwatch, and the purchase that sends its emails inline."""
import time
from contextlib import closing

from ebookstore import mail
from ebookstore.course.checks.common import Fail


def measures_durations(ctx):
    """stopwatch returns the result and the time taken"""
    stopwatch = ctx.learner("stopwatch")
    result, seconds = stopwatch(lambda x, y=0: (time.sleep(0.15), x + y)[1], 2, y=3)
    if result != 5:
        raise Fail("stopwatch must return what the function returned, and pass on args and kwargs")
    if not 0.15 <= seconds < 0.5:
        raise Fail(f"a call that sleeps 0.15 s measured {seconds:.4f} s: use time.perf_counter() before and after")


def inline_purchase_sends_three_emails(ctx):
    """inline_purchase records the purchase and sends its emails before returning"""
    inline_purchase = ctx.learner("inline_purchase")
    with closing(ctx.db()) as conn:
        purchase = inline_purchase(conn, ctx.settings, 1, 3)
        rows = conn.execute("SELECT COUNT(*) FROM purchases").fetchone()[0]
    if not isinstance(purchase, dict) or rows != 1:
        raise Fail("record the purchase with store.buy(conn, buyer_id, ebook_id) and return it")
    keys = sorted(m["key"] for m in mail.outbox(ctx.settings))
    expected = sorted(f"purchase-{purchase['id']}-{kind}" for kind in ("commission", "receipt", "statistics"))
    if keys != expected:
        raise Fail(f"after the call the outbox should hold the receipt, the commission and the statistics "
                   f"email of this purchase; it holds {keys or 'nothing'}")


def inline_purchase_waits_for_the_mail_provider(ctx):
    """with a slow mail provider, the buyer waits for every email"""
    inline_purchase, stopwatch = ctx.learner("inline_purchase"), ctx.learner("stopwatch")
    slow = ctx.settings.replace(mail_delay=0.2)
    with closing(ctx.db()) as conn:
        _, seconds = stopwatch(inline_purchase, conn, slow, 2, 1)
    if seconds < 0.6:
        raise Fail(f"three emails at 0.2 s each took only {seconds:.2f} s: deliver each with "
                   "mail.deliver(message, settings), using the settings you were given")


CHECKS = [measures_durations, inline_purchase_sends_three_emails, inline_purchase_waits_for_the_mail_provider]
