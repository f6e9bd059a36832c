"""Checks of exercise 03: a job function with a primitive argument, enqueue and enqueue_in."""
from contextlib import closing
from datetime import datetime, timezone

from rq.registry import ScheduledJobRegistry

from ebookstore import mail, queues, store
from ebookstore.course.checks.common import Fail, job_data, job_outcome, local_time_zone, run_worker, short


GAP_ID = 42  # an ebook the check adds, after a gap in the ids


def _is_price_tag_of(ctx, job, ebook_id, what="the job"):
    """Fail unless `job` is price_tag(ebook_id), stored as JSON."""
    if job is None or not hasattr(job, "id"):
        raise Fail("return the Job that RQ gave you")
    if not job.func_name.endswith(".price_tag") or job.func_name.startswith("__main__"):
        raise Fail(f"{what} runs {job.func_name!r}: enqueue the price_tag function itself (not the result of "
                   "calling it), from the exercise module")
    data = job_data(ctx.redis, job)
    if data is None:
        raise Fail(f"{what} is not JSON: create the Queue with serializer=JSONSerializer")
    if data[2] != [ebook_id] or data[3]:
        raise Fail(f"{what}'s arguments are {short(data[2], 60)}: pass the ebook's id, and only the id")


def enqueues_a_json_job_on_default(ctx):
    """enqueue_price_tag puts price_tag(ebook_id) on "default", as JSON"""
    enqueue_price_tag = ctx.learner("enqueue_price_tag")
    # The same ebook twice, too: a job id made from the ebook id would make the third call replace the first.
    calls = [(2, enqueue_price_tag(ctx.redis, 2)), (3, enqueue_price_tag(ctx.redis, 3)),
             (2, enqueue_price_tag(ctx.redis, 2))]
    ids = [getattr(job, "id", index) for index, (_, job) in enumerate(calls)]
    if len(set(ids)) < len(ids):
        raise Fail(f"three calls (ebooks 2, 3, then 2 again) gave the job ids {ids}: a later call replaced an "
                   "earlier one. Each call enqueues a job of its own (let RQ choose the job id)")
    for ebook_id, job in calls:
        _is_price_tag_of(ctx, job, ebook_id)
        if job.origin != "default":
            raise Fail(f"the job went to queue {job.origin!r}; it belongs on 'default'")
    queued = queues.get_queue("default", ctx.redis).job_ids
    if sorted(queued) != sorted(ids):
        raise Fail(f"three calls (ebooks 2, 3, then 2 again) left {len(queued)} job(s) on 'default': each call "
                   "enqueues a job of its own (let RQ choose the job id)")


def price_tag_reads_current_data(ctx):
    """price_tag, run by a worker, reads the price when it runs"""
    with closing(ctx.db()) as conn:  # ids have gaps: an ebook's id is not its place in a list
        conn.execute(f"INSERT INTO ebooks (id, seller_id, title, price_cents) VALUES ({GAP_ID}, 3, 'Ids Have Gaps', 700)")
        conn.commit()
    jobs = {ebook_id: ctx.learner("enqueue_price_tag")(ctx.redis, ebook_id) for ebook_id in (2, 3, GAP_ID)}
    with closing(ctx.db()) as conn:  # the prices change after the enqueue, before the jobs run
        conn.execute("UPDATE ebooks SET price_cents = 4242 WHERE id = 2")
        conn.execute("UPDATE ebooks SET price_cents = 1200 WHERE id = 3")
        conn.commit()
        expected = {e["id"]: f"{e['title']}: {mail.money(e['price_cents'])}" for e in store.ebooks(conn)}
    log = run_worker(ctx)
    for ebook_id, job in jobs.items():
        job.refresh()
        if job.get_status() != "finished":
            raise Fail(job_outcome(job, log))
        result = job.latest_result().return_value
        if result != expected[ebook_id]:
            raise Fail(f"price_tag({ebook_id}) returned {result!r}; expected the title and the price at run time, "
                       f"{expected[ebook_id]!r}: read them when the job runs, from the store's database at "
                       "Settings.from_env().database_path, and format the price with mail.money")
    # The same process runs the job twice (a SimpleWorker, a notebook), the price changing in between.
    price_tag = ctx.learner("price_tag")
    price_tag(2)
    with closing(ctx.db()) as conn:
        conn.execute("UPDATE ebooks SET price_cents = 2500 WHERE id = 2")
        conn.commit()
        now = next(f"{e['title']}: {mail.money(e['price_cents'])}" for e in store.ebooks(conn) if e["id"] == 2)
    again = price_tag(2)
    if again != now:
        raise Fail(f"price_tag(2), run again in the same process after the price changed, returned {again!r}, "
                   f"not {now!r}: read the database each time the job runs, and keep nothing from one run to the next")


def schedules_a_job(ctx):
    """schedule_price_tag makes the job wait in the ScheduledJobRegistry"""
    before = datetime.now(timezone.utc)
    with local_time_zone():  # a learner's machine is not always on UTC
        job = ctx.learner("schedule_price_tag")(ctx.redis, 3, 30)
    queue = queues.get_queue("default", ctx.redis)
    registry = ScheduledJobRegistry(queue=queue)
    if job is None or job.id not in registry.get_job_ids():
        raise Fail("the job must wait in the 'default' queue's ScheduledJobRegistry: use enqueue_in")
    if queue.count:
        raise Fail("a scheduled job must not be in the queue yet")
    _is_price_tag_of(ctx, job, 3, "the scheduled job")
    wait = (registry.get_scheduled_time(job.id) - before).total_seconds()
    if abs(wait - 30) > 2:
        unit = " (timedelta's first argument is days: name the unit)" if abs(wait - 30 * 86400) < 60 else ""
        zone = (" on a machine whose clock is not on UTC: a naive datetime is local time to RQ, so use "
                "enqueue_in(timedelta(…)) or an aware datetime") if abs(abs(wait) % 3600 - 30) < 2 else ""
        raise Fail(f"the job is due {wait:,.0f} s from now, not 30 s{unit}{zone}")


CHECKS = [enqueues_a_json_job_on_default, price_tag_reads_current_data, schedules_a_job]
