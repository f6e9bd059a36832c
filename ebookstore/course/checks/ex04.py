"""Checks of exercise 04: the purchase commits, then a job on "critical" sends its emails.

While a check runs, Settings.from_env() describes the check's own store: an email
that buy() sends itself lands in the check's outbox and is seen. Delivery is made
to fail once for real (a mail server that is down) to see that the job fails too.
"""
from contextlib import closing
from datetime import datetime, timedelta, timezone

from redis import Redis
from rq.registry import ScheduledJobRegistry

from ebookstore import mail, queues, store
from ebookstore.jobs import statistics_report
from ebookstore.course.checks.common import (Fail, body, call_arguments, delivered_emails, job_data, job_outcome,
                                             local_time_zone, run_worker, short, shown_call)
from ebookstore.runtime import processes


class WatchedRedis(Redis):
    """A real Redis client that notes, at each command, whether the purchase is committed yet."""

    def watch_commits(self, database):
        self.database, self.committed_at_call = database, []
        return self

    def _note(self):
        with closing(store.connect(self.database)) as other:  # another connection, like a worker's
            self.committed_at_call.append(other.execute("SELECT COUNT(*) FROM purchases").fetchone()[0])

    def execute_command(self, *args, **options):
        self._note()
        return super().execute_command(*args, **options)

    def pipeline(self, *args, **kwargs):
        self._note()
        return super().pipeline(*args, **kwargs)


def _queued(ctx):
    return {n: queues.get_queue(n, ctx.redis).job_ids for n in ("critical", "default", "low")}


def _the_job(ctx):
    """The one job buy() queued on "critical" (or a Fail that says where the jobs went)."""
    queued = _queued(ctx)
    if len(queued["critical"]) != 1:
        raise Fail(f"expected exactly one job on 'critical' after a purchase; the queues hold {queued}")
    return queues.get_queue("critical", ctx.redis).fetch_job(queued["critical"][0])


def buy_enqueues_and_answers_at_once(ctx):
    """buy records the purchase, queues one job on "critical", sends nothing itself"""
    with closing(ctx.db()) as conn:
        purchase = ctx.learner("buy")(conn, ctx.redis, 1, 3)
    if not isinstance(purchase, dict) or "id" not in purchase:
        raise Fail("return the purchase (what store.buy returns)")
    if mail.outbox(ctx.settings):
        raise Fail("buy sent emails itself, so the buyer waits for them: only enqueue the job, and let the "
                   "worker send them")
    queued = _queued(ctx)
    if len(queued["critical"]) != 1 or queued["default"] or queued["low"]:
        raise Fail(f"expected exactly one job on 'critical'; the queues hold {queued}")
    job = queues.get_queue("critical", ctx.redis).fetch_job(queued["critical"][0])
    called_with = call_arguments(ctx.learner("purchase_notification"), job.args, job.kwargs)
    if not job.func_name.endswith(".purchase_notification") or called_with != [purchase["id"]]:
        args = short(shown_call(job), 60)
        raise Fail(f"the job is {job.func_name.rsplit('.', 1)[-1]}({args}): enqueue purchase_notification with "
                   "the purchase's id, and only the id (the worker loads the purchase when it runs)")


def enqueues_only_after_commit(ctx):
    """the job is enqueued after the commit, and never for a failed purchase"""
    buy = ctx.learner("buy")
    ctx.redis  # start the check's Redis
    watched = WatchedRedis.from_url(ctx.settings.redis_url).watch_commits(ctx.settings.database_path)
    with closing(ctx.db()) as conn:
        buy(conn, watched, 2, 3)
        if not watched.committed_at_call or watched.committed_at_call[-1] == 0:
            raise Fail("the job was enqueued while the transaction was still open: a worker could run it "
                       "before the purchase is visible. Enqueue after COMMIT (store.buy's after_commit)")
        for queue in queues.load_config().names:
            queues.get_queue(queue, ctx.redis).empty()
        try:
            buy(conn, watched, 3, 1)  # a seller buying their own ebook
        except store.PurchaseError:
            pass
        else:
            raise Fail("buying your own ebook must fail (store.buy raises PurchaseError): let it raise")
    if any(_queued(ctx).values()):
        raise Fail("a purchase that failed queued a job: enqueue only once the purchase exists")


def worker_sends_every_email(ctx):
    """a worker running purchase_notification sends each purchase's emails and returns their keys"""
    buy = ctx.learner("buy")
    with closing(ctx.db()) as conn:
        purchases = [buy(conn, ctx.redis, 2, 4), buy(conn, ctx.redis, 1, 4)]  # two jobs: each must load its own
    critical = queues.get_queue("critical", ctx.redis)
    jobs = [critical.fetch_job(job_id) for job_id in critical.job_ids]
    if len(jobs) != 2:
        raise Fail(f"two purchases should queue two jobs on 'critical'; the queues hold {_queued(ctx)}")
    log = run_worker(ctx)
    emails = delivered_emails(ctx.settings)
    for purchase, job in zip(purchases, jobs):
        job.refresh()
        if job.get_status() != "finished":
            raise Fail(job_outcome(job, log))
        expected = {f"purchase-{purchase['id']}-{kind}" for kind in ("receipt", "commission", "statistics")}
        if not expected <= set(emails):
            raise Fail(f"after the worker ran the outbox holds {sorted(emails)}, expected the receipt, commission "
                       f"and statistics of each purchase, e.g. {sorted(expected)}")
        returned = job.latest_result().return_value
        if not isinstance(returned, (list, tuple)) or sorted(map(str, returned)) != sorted(expected):
            raise Fail(f"the job for purchase {purchase['id']} returned {short(returned, 80)}: return the three "
                       "emails' X-Ebookstore-Key headers, e.g. message[\"X-Ebookstore-Key\"]")
        if {emails[k]["To"] for k in expected} != {purchase["buyer_email"], purchase["seller_email"]} or \
                emails[f"purchase-{purchase['id']}-receipt"]["To"] != purchase["buyer_email"]:
            raise Fail("the receipt goes to the buyer, the other two to the seller")
    if len(emails) != 6:
        raise Fail(f"two purchases make six emails; the outbox holds {sorted(emails)}")
    sold = "has sold 2 copies"
    if sold not in body(emails[f"purchase-{purchases[-1]['id']}-statistics"]):
        raise Fail(f"after the second sale of ebook 4 its statistics email says \"{sold}\": read "
                   "reports.ebook_statistics when the job runs, for the purchase's ebook")


def a_failed_delivery_fails_the_job(ctx):
    """when the mail server is down, the job fails (so that RQ can retry it)"""
    with closing(ctx.db()) as conn:
        ctx.learner("buy")(conn, ctx.redis, 1, 4)
    job = _the_job(ctx)
    # Deliver by SMTP to a port where nothing listens: every delivery raises ConnectionRefusedError.
    ctx.settings = ctx.settings.replace(smtp_url=f"smtp://127.0.0.1:{processes.free_port()}")
    log = run_worker(ctx)
    status = job.get_status(refresh=True)
    if status == "finished":
        raise Fail("the mail server was down, yet the job finished: a delivery error caught and ignored looks "
                   "like success, so RQ never retries the job. Let the error reach the worker")
    if status != "failed":
        raise Fail(job_outcome(job, log))


def schedules_the_statistics_report(ctx):
    """schedule_statistics_report schedules statistics_report(period) on "low" at the time given"""
    at = (datetime.now(timezone.utc) + timedelta(minutes=5)).astimezone(timezone(timedelta(hours=5, minutes=30)))
    with local_time_zone():  # neither `at`'s zone nor the machine's is UTC
        job = ctx.learner("schedule_statistics_report")(ctx.redis, "daily", at)
    registry = ScheduledJobRegistry(queue=queues.get_queue("low", ctx.redis))
    if job is None or job.id not in registry.get_job_ids():
        raise Fail("the job must wait in the 'low' queue's ScheduledJobRegistry: use enqueue_at")
    data = job_data(ctx.redis, job)
    if data is None:
        raise Fail("the job is not JSON: create the Queue with serializer=JSONSerializer")
    if job.func_name != "ebookstore.jobs.statistics_report" or \
            call_arguments(statistics_report, job.args, job.kwargs) != ["daily"]:
        raise Fail(f"the job is {job.func_name}({short(shown_call(job), 60)}): schedule "
                   "ebookstore.jobs.statistics_report(period)")
    off = (registry.get_scheduled_time(job.id) - at).total_seconds()
    if abs(off) > 1:
        raise Fail(f"the job is due {off:+,.0f} s from the time you were given ({at.isoformat(timespec='seconds')}): "
                   "hand `at`, an aware datetime, to enqueue_at as it is (never drop or replace its time zone)")


CHECKS = [buy_enqueues_and_answers_at_once, enqueues_only_after_commit, worker_sends_every_email,
          a_failed_delivery_fails_the_job, schedules_the_statistics_report]
