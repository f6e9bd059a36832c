"""Checks of exercise 12: an idempotent notification job, run twice and killed halfway, over real SMTP.

Runs that could send an email twice deliver by SMTP to a real SMTP server,
which keeps duplicates (the store's Maildir delivery would hide them). A second
run after a kill, and a run whose delivery fails, are called in the grader's
process exactly as a worker calls the job: what the check is about is the job's
own bookkeeping, and a worker fewer keeps the exercise within its time on a
loaded machine.

Delivery is also made to fail for real (the mail server is down): a job that
swallows the error, or records an email it never sent, is caught.
"""
import contextlib
import signal
import time
from collections import Counter
from contextlib import closing

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

from ebookstore import mail, queues, store
from ebookstore.course.checks.common import Fail, job_outcome, run_worker
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until


@contextlib.contextmanager
def _smtp(ctx, delay=0.0):
    """Deliver by SMTP to a real SMTP server (which, unlike our Maildir delivery, keeps duplicates).

    The server (aiosmtpd, as `ebookstore mail` runs it) runs in a thread of the grader: one
    process start fewer per check keeps the exercise within its time on a loaded machine.
    """
    mail.maildir(ctx.settings)
    catcher = Controller(Mailbox(ctx.settings.maildir), hostname="127.0.0.1", port=ctx.settings.smtp_port)
    catcher.start()
    try:
        _deliver_by_smtp(ctx, delay)
        yield
    finally:
        catcher.stop()


def _deliver_by_smtp(ctx, delay=0.0):
    ctx.settings = ctx.settings.replace(smtp_url=f"smtp://127.0.0.1:{ctx.settings.smtp_port}", mail_delay=delay)


def _purchase(ctx, ebook_id=3):
    with closing(ctx.db()) as conn:
        return store.buy(conn, 2, ebook_id)["id"]


def _run(ctx, purchase_id, name, times=1):
    """Run notify_once(purchase_id) `times` times, each in a process of its own (a forking worker's work-horse)."""
    critical = queues.get_queue("critical", ctx.redis)
    jobs = [critical.enqueue(ctx.learner("notify_once"), purchase_id) for _ in range(times)]
    log = run_worker(ctx, name, ["critical"], simple=times == 1)
    for run, job in enumerate(jobs, start=1):
        if job.get_status(refresh=True) != "finished":
            which = f"run {run} of the same purchase: " if times > 1 else ""
            raise Fail(which + job_outcome(job, log))
    return [job.return_value() for job in jobs]


def _ledger(ctx) -> set:
    with closing(ctx.db()) as conn:
        return {row[0] for row in conn.execute("SELECT key FROM deliveries")}


def _delivered(ctx):
    return Counter(m["key"] for m in mail.outbox(ctx.settings))


def sends_receipt_and_commission(ctx):
    """notify_once sends the receipt and the commission email"""
    purchases = [_purchase(ctx, 3), _purchase(ctx, 4)]  # two purchases of one buyer: each has its own emails
    critical = queues.get_queue("critical", ctx.redis)
    jobs = [critical.enqueue(ctx.learner("notify_once"), purchase_id) for purchase_id in purchases]
    log = run_worker(ctx, "first", ["critical"])
    for job in jobs:
        if job.get_status(refresh=True) != "finished":
            raise Fail(job_outcome(job, log))
    delivered = {m["key"]: m for m in mail.outbox(ctx.settings)}
    with closing(ctx.db()) as conn:
        wanted = [email for purchase_id in purchases for purchase in [store.get_purchase(conn, purchase_id)]
                  for email in (mail.receipt_email(purchase), mail.commission_email(purchase))]
    expected = {email["X-Ebookstore-Key"] for email in wanted}
    if set(delivered) != expected:
        raise Fail(f"for purchases {purchases} the catcher received {sorted(delivered)}; expected {sorted(expected)}: "
                   "each purchase gets its own receipt and commission (the key names the purchase)")
    for email in wanted:
        got = delivered[email["X-Ebookstore-Key"]]
        if (got["to"], got["subject"]) != (email["To"], email["Subject"]):
            raise Fail(f"{email['X-Ebookstore-Key']} went to {got['to']} as {got['subject']!r}; it should go to "
                       f"{email['To']} as {email['Subject']!r}: send the emails mail.receipt_email and "
                       "mail.commission_email build")
    for purchase_id, job in zip(purchases, jobs):
        sent = job.return_value()
        keys = {f"purchase-{purchase_id}-receipt", f"purchase-{purchase_id}-commission"}
        if not isinstance(sent, list) or sorted(sent) != sorted(keys):
            raise Fail(f"return the keys this run sent, as a list; for purchase {purchase_id} you returned {sent!r}")


def running_twice_sends_nothing_twice(ctx):
    """run twice, each email still arrives once"""
    purchase_id = _purchase(ctx)
    with _smtp(ctx):
        first, again = _run(ctx, purchase_id, "twice", times=2)  # one after the other, each in its own process
    twice = {key: n for key, n in _delivered(ctx).items() if n > 1}
    if twice:
        raise Fail(f"a second run sent again: {twice}. Look up each email's key (X-Ebookstore-Key) in the deliveries "
                   "table first: a ledger in the process's memory is gone when the next run starts")
    if again != []:
        raise Fail(f"the second run returned {again!r}; it sent nothing new: return the keys it sent, an empty list")


HALFWAY = 0.4  # s from the first email to the kill: half the mail delay, the margin on each side on a busy machine


def a_run_killed_halfway_is_completed_once(ctx):
    """killed after its first email, a second run sends only what is missing"""
    with _smtp(ctx, delay=HALFWAY * 2):  # each email waits: the kill lands halfway through the second one's wait
        _kill_halfway_and_run_again(ctx)


def _kill_halfway_and_run_again(ctx):
    purchase_id, notify_once = _purchase(ctx), ctx.learner("notify_once")
    job = queues.get_queue("critical", ctx.redis).enqueue(notify_once, purchase_id)
    worker = ctx.stack.worker("doomed", ["critical"], simple=True)
    patience = max(5.0, ctx.seconds_left(6))  # the worker's start on a busy machine too; 6 s kept for the rest
    try:
        wait_until(lambda: _delivered(ctx) or job.get_status(refresh=True) == "failed", patience, interval=0.02,
                   what="the first email")
    except TimeoutError:
        raise Fail(f"no email arrived within {patience:.0f} s") from None
    if job.get_status(refresh=True) == "failed":
        raise Fail(f"before sending anything, {job_outcome(job)}")
    # Halfway through the second email's wait: a job that records each email right after sending it has recorded
    # the first; one that records before sending has recorded the second too (killed as soon as the first email
    # showed, a busy machine may not yet have let it, and that mistake would pass).
    time.sleep(HALFWAY)
    worker.send_signal(signal.SIGKILL)  # halfway: the second email is still on its way
    processes.wait_gone([worker], 2)
    first = _delivered(ctx)
    if len(first) != 1:
        raise Fail(f"expected exactly one email before the kill; got {dict(first)}")
    if set(first) - _ledger(ctx):
        raise Fail("the email sent before the kill is not in the deliveries table: record each key right after sending")
    _deliver_by_smtp(ctx)  # the second run needs no slow mail provider
    notify_once(purchase_id)  # the second run, called here as a worker calls it
    counts = _delivered(ctx)
    expected = {f"purchase-{purchase_id}-receipt", f"purchase-{purchase_id}-commission"}
    missing = sorted(expected - set(counts))
    if missing:
        raise Fail(f"after the kill and a second run, {missing[0]} never arrived, yet the deliveries table says it "
                   "was sent: record a key only after its email is sent")
    if set(counts) != expected or any(n > 1 for n in counts.values()):
        raise Fail(f"after the kill and a second run the catcher holds {dict(counts)}; each of {sorted(expected)} once")


def a_failed_delivery_is_not_recorded(ctx):
    """when the mail server is down, the job fails and records nothing"""
    notify_once = ctx.learner("notify_once")
    purchase_id = _purchase(ctx)
    # Deliver by SMTP to a port where nothing listens yet: delivery raises ConnectionRefusedError.
    # The job is called here as a worker calls it: a failed call is a failed job.
    ctx.settings = ctx.settings.replace(smtp_url=f"smtp://127.0.0.1:{ctx.settings.smtp_port}")
    try:
        notify_once(purchase_id)
    except NotImplementedError:
        raise
    except Exception:
        pass
    else:
        raise Fail("the mail server was down, yet notify_once returned as if all went well: an error caught and "
                   "ignored makes the job look finished, so RQ never retries it. Let delivery errors reach the worker")
    if _ledger(ctx):
        raise Fail(f"the deliveries table holds {sorted(_ledger(ctx))} though the mail server was down: record a key "
                   "only once its email is sent")


CHECKS = [sends_receipt_and_commission, running_twice_sends_nothing_twice, a_run_killed_halfway_is_completed_once,
          a_failed_delivery_is_not_recorded]
