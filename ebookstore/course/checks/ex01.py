"""Checks of exercise 01: a stopwatch, and the purchase that sends its emails inline."""
import contextlib
import datetime as _datetime
import time
import types
from contextlib import closing

from ebookstore import mail, reports
from ebookstore.course.checks.common import Fail, body, delivered_emails

JUMP = 3600.0  # the wall clock is set back an hour while the learner's stopwatch runs


def measures_durations(ctx):
    """stopwatch returns the result and the time taken"""
    stopwatch = ctx.learner("stopwatch")
    answer = stopwatch(lambda x, y=0: (time.sleep(0.15), x + y)[1], 2, y=3)
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Fail(f"stopwatch returned {type(answer).__name__} {answer!r:.60}: return a tuple of two, "
                   "(the function's result, the seconds it took)")
    result, seconds = answer
    if result != 5:
        raise Fail("stopwatch must return what the function returned, and pass on args and kwargs")
    if not 0.15 <= seconds < 0.5:
        raise Fail(f"a call that sleeps 0.15 s measured {seconds:.4f} s: use time.perf_counter() before and after")
    nothing, _ = stopwatch(lambda: None)
    if nothing is not None:
        raise Fail(f"a function that returns None gave result {nothing!r}: return what the function returned")


class _JumpingDatetime(_datetime.datetime):
    """datetime whose now() (and utcnow()) is set back an hour after its first reading, like a clock being set."""
    readings = 0

    @classmethod
    def now(cls, tz=None):
        cls.readings += 1
        return super().now(tz) - _datetime.timedelta(seconds=JUMP if cls.readings > 1 else 0)

    @classmethod
    def utcnow(cls):
        return cls.now(_datetime.timezone.utc).replace(tzinfo=None)


@contextlib.contextmanager
def _wall_clock_set_back(module):
    """In the learner's module only: the wall clock (time.time, datetime.now) jumps back an hour after its first reading.

    That is what happens when the system clock is corrected (NTP, daylight saving done wrong, an
    administrator): a monotonic clock (time.perf_counter, time.monotonic) does not move.
    """
    readings = []

    def jumping(real):
        def read():
            readings.append(1)
            return real() - (JUMP * (1 if len(readings) > 1 else 0)) * (1e9 if real is time.time_ns else 1)
        return read
    fake_time = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("__")})
    fake_time.time, fake_time.time_ns = jumping(time.time), jumping(time.time_ns)
    fake_datetime = types.SimpleNamespace(**{n: getattr(_datetime, n) for n in dir(_datetime) if not n.startswith("__")})
    fake_datetime.datetime = _JumpingDatetime
    _JumpingDatetime.readings = 0
    replacements = {time: fake_time, time.time: fake_time.time, time.time_ns: fake_time.time_ns,
                    _datetime: fake_datetime, _datetime.datetime: _JumpingDatetime}
    saved = {name: value for name, value in vars(module).items() if any(value is r for r in replacements)}
    try:
        for name, value in saved.items():
            setattr(module, name, next(new for old, new in replacements.items() if old is value))
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def ignores_wall_clock_changes(ctx):
    """stopwatch measures with a monotonic clock: setting the clock does not change a duration"""
    stopwatch = ctx.learner("stopwatch")
    with _wall_clock_set_back(ctx.module):
        _, seconds = stopwatch(time.sleep, 0.05)
    if not 0.05 <= seconds < 1:
        raise Fail(f"the clock was set back an hour during a 0.05 s call and stopwatch measured {seconds:,.1f} s: "
                   "the wall clock (time.time, datetime.now) jumps when it is set. Use time.perf_counter(), a "
                   "monotonic clock made for durations")


def inline_purchase_sends_three_emails(ctx):
    """inline_purchase records the purchase and sends its emails before returning"""
    inline_purchase = ctx.learner("inline_purchase")
    with closing(ctx.db()) as conn:
        purchase = inline_purchase(conn, ctx.settings, 1, 3)
        rows = conn.execute("SELECT id, buyer_id, ebook_id FROM purchases").fetchall()
        stats = reports.ebook_statistics(conn, 3)
    if not isinstance(purchase, dict) or len(rows) != 1 or purchase.get("id") != rows[0][0]:
        raise Fail("record the purchase with store.buy(conn, buyer_id, ebook_id) and return it (the dict store.buy "
                   "returns)")
    if tuple(rows[0][1:]) != (1, 3):
        raise Fail(f"buyer 1 bought ebook 3, yet the store recorded buyer {rows[0][1]} and ebook {rows[0][2]}: "
                   "store.buy(conn, buyer_id, ebook_id)")
    keys = sorted(m["key"] for m in mail.outbox(ctx.settings))
    expected = sorted(f"purchase-{purchase['id']}-{kind}" for kind in ("commission", "receipt", "statistics"))
    if keys != expected:
        raise Fail(f"after the call the outbox should hold the receipt, the commission and the statistics "
                   f"email of this purchase; it holds {keys or 'nothing'}")
    emails = delivered_emails(ctx.settings)
    if emails[expected[0]]["To"] != purchase["seller_email"] or emails[expected[1]]["To"] != purchase["buyer_email"]:
        raise Fail("the receipt goes to the buyer and the commission email to the seller: build them with "
                   "mail.receipt_email(purchase) and mail.commission_email(purchase)")
    sold = f"has sold {stats['copies_sold']} copies"
    if sold not in body(emails[expected[2]]):
        raise Fail(f"the statistics email must count this purchase too (\"{sold}\"): read "
                   "reports.ebook_statistics after store.buy has recorded the purchase")


def inline_purchase_waits_for_the_mail_provider(ctx):
    """with a slow mail provider, the buyer waits for every email"""
    inline_purchase, stopwatch = ctx.learner("inline_purchase"), ctx.learner("stopwatch")
    slow = ctx.settings.replace(mail_delay=0.2)
    with closing(ctx.db()) as conn:
        _, seconds = stopwatch(inline_purchase, conn, slow, 2, 1)
    if seconds < 0.6:
        raise Fail(f"three emails at 0.2 s each took only {seconds:.2f} s: deliver each with "
                   "mail.deliver(message, settings), using the settings you were given")


CHECKS = [measures_durations, ignores_wall_clock_changes, inline_purchase_sends_three_emails,
          inline_purchase_waits_for_the_mail_provider]
