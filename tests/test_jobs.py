"""Jobs end to end: enqueued after commit, run by a real worker process, emails delivered."""
import json
import zlib
from contextlib import closing

import pytest
from rq.job import JobStatus

from ebookstore import jobs, mail, queues, reports, store
from ebookstore.course import measure
from ebookstore.runtime.processes import wait_until


def run_burst_worker(stack, **options):
    """Run a real `rq worker --burst` to completion (it exits when the queues are empty)."""
    proc = stack.worker("burst", burst=True, **options)
    proc.wait(timeout=30)
    return stack.log("burst", 50)


def test_purchase_notification_sends_three_emails_through_a_worker(settings, stack, redis):
    with closing(store.connect(settings.database_path)) as conn:
        purchase = jobs.buy_and_notify(conn, redis, 1, 3)
    assert len(purchase["jobs"]) == 1
    job = queues.get_queue("critical", redis).fetch_job(purchase["jobs"][0])
    assert job.get_status() == JobStatus.QUEUED
    assert mail.outbox(settings) == []  # nothing is sent inside the request

    log = run_burst_worker(stack)
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED, log
    keys = sorted(m["key"] for m in mail.outbox(settings))
    pid = purchase["id"]
    assert keys == [f"purchase-{pid}-commission", f"purchase-{pid}-receipt", f"purchase-{pid}-statistics"]
    recipients = {m["to"] for m in mail.outbox(settings)}
    assert recipients == {"ada@example.test", "dev@example.test"}


def test_failed_purchase_enqueues_nothing(settings, redis):
    with closing(store.connect(settings.database_path)) as conn:
        with pytest.raises(store.PurchaseError):
            jobs.buy_and_notify(conn, redis, 3, 1)  # a seller buying their own ebook
        assert conn.execute("SELECT COUNT(*) FROM purchases").fetchone()[0] == 0
    assert all(queues.get_queue(name, redis).count == 0 for name in queues.load_config().names)


def test_a_purchase_enqueues_in_one_redis_round_trip(settings, redis):
    with closing(store.connect(settings.database_path)) as conn:
        first, purchase = store.buy(conn, 1, 1), store.buy(conn, 2, 1)
    # The first enqueue on a connection connects and asks the server's version
    # (RQ caches it on the connection): the web app pays that once, not per purchase.
    jobs.enqueue_purchase_notifications(redis, first["id"])
    with measure.counting_round_trips(redis) as sent:
        jobs.enqueue_purchase_notifications(redis, purchase["id"])
    assert len(sent) == 1, f"{len(sent)} round trips: {sent}"


def test_jobs_use_the_json_serializer(settings, redis):
    job = queues.enqueue(redis, jobs.statistics_report, "weekly")
    data = json.loads(zlib.decompress(redis.hget(job.key, "data")))  # RQ compresses job data
    assert data[0] == "ebookstore.jobs.statistics_report" and data[2] == ["weekly"]
    with pytest.raises(TypeError):
        queues.enqueue(redis, jobs.statistics_report, {"a", "set"})  # not JSON: refused at enqueue


def test_statistics_reports(settings, stack, redis):
    with closing(store.connect(settings.database_path)) as conn:
        for buyer, ebook in [(1, 1), (2, 1), (1, 3)]:
            store.buy(conn, buyer, ebook)
        since, until = reports.period_bounds("daily")
        figures = reports.sales_statistics(conn, since, until)
    assert figures["total_sales"] == 3
    assert figures["revenue_cents"] == 1900 * 2 + 1500
    assert figures["popular_ebooks"][0] == {"ebook_id": 1, "title": "Background Jobs in Practice", "copies_sold": 2}
    assert [s["name"] for s in figures["active_sellers"]] == ["Cleo Author", "Dev Author"]

    daily = queues.enqueue(redis, jobs.daily_statistics)
    weekly = queues.enqueue(redis, jobs.statistics_report, "weekly")
    assert daily.origin == "low" and weekly.origin == "low"
    run_burst_worker(stack)
    assert daily.latest_result().return_value["total_sales"] == 3
    subjects = sorted(m["subject"] for m in mail.outbox(settings))
    assert subjects == ["Daily statistics: 3 sales", "Weekly statistics: 3 sales"]


def test_cron_enqueues_daily_statistics_for_a_worker(settings, stack, redis):
    stack.cron(env={"EBOOKSTORE_DAILY_INTERVAL": "1"})
    low = queues.get_queue("low", redis)
    wait_until(lambda: low.count >= 2, 10, what="two cron runs")
    assert {job.func_name for job in low.jobs} == {"ebookstore.jobs.daily_statistics"}
    stack.stop("cron")
    run_burst_worker(stack)
    assert any(m["subject"].startswith("Daily statistics") for m in mail.outbox(settings))
