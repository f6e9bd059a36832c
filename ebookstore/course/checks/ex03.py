"""Checks of exercise 03: a job function with a primitive argument, enqueue and enqueue_in."""
from contextlib import closing
from datetime import datetime, timezone

from rq.registry import ScheduledJobRegistry

from ebookstore import mail, queues, store
from ebookstore.course.checks.common import Fail, job_data, job_outcome, local_time_zone, run_worker, short


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
    first, second = enqueue_price_tag(ctx.redis, 2), enqueue_price_tag(ctx.redis, 3)
    if first is not None and second is not None and getattr(first, "id", 1) == getattr(second, "id", 2):
        raise Fail(f"two calls (ebooks 2 and 3) gave the same job, {first.id!r}: the second replaced the first. Each "
                   "call enqueues a job of its own (let RQ choose the job id)")
    for job, ebook_id in ((first, 2), (second, 3)):
        _is_price_tag_of(ctx, job, ebook_id)
        if job.origin != "default":
            raise Fail(f"the job went to queue {job.origin!r}; it belongs on 'default'")
    queued = queues.get_queue("default", ctx.redis).job_ids
    if first.id == second.id or sorted(queued) != sorted([first.id, second.id]):
        raise Fail(f"two calls (ebooks 2 and 3) left {len(queued)} job(s) on 'default': each call enqueues a job of "
                   "its own (let RQ choose the job id)")


def price_tag_reads_current_data(ctx):
    """price_tag, run by a worker, reads the price when it runs"""
    jobs = {ebook_id: ctx.learner("enqueue_price_tag")(ctx.redis, ebook_id) for ebook_id in (2, 3)}
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
