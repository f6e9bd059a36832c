"""Checks of exercise 03: a job function with a primitive argument, enqueue and enqueue_in."""
import json
import zlib
from contextlib import closing
from datetime import datetime, timezone

from rq.registry import ScheduledJobRegistry

from ebookstore import queues
from ebookstore.course.checks.common import Fail, job_outcome, run_worker, short


def enqueues_a_json_job_on_default(ctx):
    """enqueue_price_tag puts price_tag(ebook_id) on "default", as JSON"""
    job = ctx.learner("enqueue_price_tag")(ctx.redis, 2)
    if job is None or not hasattr(job, "id"):
        raise Fail("return the Job that enqueue gave you")
    if job.origin != "default":
        raise Fail(f"the job went to queue {job.origin!r}; it belongs on 'default'")
    if not job.func_name.endswith(".price_tag") or job.func_name.startswith("__main__"):
        raise Fail(f"the job runs {job.func_name!r}: enqueue the price_tag function itself (not the result of "
                   "calling it), from the exercise module")
    try:
        data = json.loads(zlib.decompress(ctx.redis.hget(job.key, "data")))
    except ValueError:
        raise Fail("the job is not JSON: create the Queue with serializer=JSONSerializer") from None
    if data[2] != [2]:
        raise Fail(f"the job's arguments are {short(data[2], 80)}: pass the ebook's id, and only the id")


def price_tag_reads_current_data(ctx):
    """price_tag, run by a worker, reads the price when it runs"""
    job = ctx.learner("enqueue_price_tag")(ctx.redis, 2)
    with closing(ctx.db()) as conn:  # the price changes after the enqueue, before the job runs
        conn.execute("UPDATE ebooks SET price_cents = 4242 WHERE id = 2")
    log = run_worker(ctx)
    job.refresh()
    if job.get_status() != "finished":
        raise Fail(job_outcome(job, log))
    result = job.latest_result().return_value
    if result != "Redis for the Impatient: $42.42":
        raise Fail(f"price_tag(2) returned {result!r}; expected the title and the price at run time, "
                   "'Redis for the Impatient: $42.42': read them when the job runs, from the store's database "
                   "at Settings.from_env().database_path")


def schedules_a_job(ctx):
    """schedule_price_tag makes the job wait in the ScheduledJobRegistry"""
    before = datetime.now(timezone.utc)
    job = ctx.learner("schedule_price_tag")(ctx.redis, 3, 30)
    queue = queues.get_queue("default", ctx.redis)
    registry = ScheduledJobRegistry(queue=queue)
    if job is None or job.id not in registry.get_job_ids():
        raise Fail("the job must wait in the 'default' queue's ScheduledJobRegistry: use enqueue_in")
    if queue.count:
        raise Fail("a scheduled job must not be in the queue yet")
    wait = (registry.get_scheduled_time(job.id) - before).total_seconds()
    if abs(wait - 30) > 2:
        unit = " (timedelta's first argument is days: name the unit)" if abs(wait - 30 * 86400) < 60 else ""
        raise Fail(f"the job is due {wait:,.0f} s from now, not 30 s{unit}")


CHECKS = [enqueues_a_json_job_on_default, price_tag_reads_current_data, schedules_a_job]
