"""Nothing lost, nothing sent twice: kill -9 recovery, idempotent emails, the outbox, Redis restarts."""
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pytest

from ebookstore import claims, jobs, mail, outbox, queues, store
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until


def keys_of(settings, purchase_id):
    return sorted(m["key"] for m in mail.outbox(settings) if m["key"].startswith(f"purchase-{purchase_id}-"))


@pytest.mark.solo  # a recovery time is the claim: measured alone, not beside the parallel tests
def test_a_killed_workers_job_is_completed_by_another_within_20_s(settings, stack, redis):
    slow = settings.replace(mail_delay=1.0)  # the job takes 3 s: time to kill it halfway
    stack.settings = slow
    victim = stack.worker("victim", with_scheduler=True, wait_ready=True)
    with closing(store.connect(settings.database_path)) as conn:
        purchase = jobs.buy_and_notify(conn, redis, 1, 3)
    horse = wait_until(lambda: processes.work_horse(victim), 5, what="the victim's horse")
    time.sleep(0.5)
    victim_tree = [victim, horse]
    for proc in victim_tree:          # a crash: the worker and its horse die at once
        proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    stack.worker("rescuer", with_scheduler=True, wait_ready=True)
    wait_until(lambda: len(keys_of(settings, purchase["id"])) == 3, 20, interval=0.1, what="recovery")
    recovery = time.monotonic() - killed_at
    print(f"\nkill -9 recovery: the job was completed by another worker {recovery:.1f} s after the kill")
    assert recovery < 20
    job = queues.get_queue("critical", redis).fetch_job(purchase["jobs"][0])
    wait_until(lambda: job.get_status(refresh=True) == "finished", 5, what="the job's bookkeeping after its last email")
    assert len(mail.outbox(settings)) == 3, "nothing was sent twice"


def test_a_notification_job_that_runs_twice_sends_each_email_once(settings, redis, monkeypatch):
    monkeypatch.setenv("EBOOKSTORE_HOME", str(settings.home))
    monkeypatch.setenv("EBOOKSTORE_DATABASE", str(settings.database_path))
    with closing(store.connect(settings.database_path)) as conn:
        purchase = store.buy(conn, 2, 4)
    first = jobs.purchase_notification(purchase["id"])
    second = jobs.purchase_notification(purchase["id"])
    assert len(first["sent"]) == 3 and second["sent"] == []
    assert len(keys_of(settings, purchase["id"])) == 3


def test_delivery_is_idempotent_even_when_the_ledger_missed_it(settings):
    # A kill between delivering and recording: the job runs again and delivers again.
    with closing(store.connect(settings.database_path)) as conn:
        purchase = store.get_purchase(conn, store.buy(conn, 1, 2)["id"])
    for _ in range(3):
        mail.deliver(mail.receipt_email(purchase), settings)
    assert keys_of(settings, purchase["id"]) == [f"purchase-{purchase['id']}-receipt"]


def test_purchases_succeed_while_redis_is_down_and_the_relay_catches_up(tmp_path, stack):
    settings = stack.settings.replace(external_redis_url=None, redis_port=processes.free_port())
    stack.settings = settings
    stack.redis()
    redis = queues.connect(settings)
    stack.stop("redis")
    with closing(store.connect(settings.database_path)) as conn:
        purchases = [jobs.buy_and_notify(conn, redis, 1, ebook) for ebook in (1, 2, 3)]
        assert [p["jobs"] for p in purchases] == [[], [], []]      # not queued…
        assert len(outbox.pending(conn)) == 3                       # …but recorded, for the relay at once
        assert all(row["handed_over_at"] for row in outbox.pending(conn))
    stack.redis()
    stack.relay()
    stack.worker("worker", wait_ready=True)
    for purchase in purchases:
        wait_until(lambda: len(keys_of(settings, purchase["id"])) == 3, 15, what="the outbox's emails")
    with closing(store.connect(settings.database_path)) as conn:
        assert outbox.pending(conn) == []


def test_queued_jobs_survive_a_redis_kill_and_restart(stack):
    settings = stack.settings.replace(external_redis_url=None, redis_port=processes.free_port())
    stack.settings = settings
    server = stack.redis()
    redis = queues.connect(settings)
    ids = [queues.get_queue("low", redis).enqueue("ebookstore.course.demo_jobs.nap", 0).id for _ in range(50)]
    server.send_signal(signal.SIGKILL)  # no shutdown, no final save
    server.wait(timeout=5)
    stack.redis()
    assert queues.get_queue("low", queues.connect(settings)).job_ids == ids


def test_two_copies_of_a_job_running_at_once_send_each_email_once(settings, stack):
    """A job enqueued twice, or retried while a killed worker's horse still runs it: both copies run together."""
    smtp = settings.replace(smtp_url=f"smtp://127.0.0.1:{settings.smtp_port}", mail_delay=0.3)
    stack.settings = smtp
    stack.mail()
    with closing(store.connect(settings.database_path)) as conn:
        purchase = store.buy(conn, 1, 4)
    run = f"from ebookstore import jobs; print(jobs.purchase_notification({purchase['id']})['sent'])"
    copies = [stack.start(f"copy-{i}", [sys.executable, "-c", run]) for i in range(3)]
    for proc in copies:
        proc.wait(timeout=30)
    delivered = [m["key"] for m in mail.outbox(settings)]  # the catcher keeps duplicates
    assert sorted(delivered) == sorted(f"purchase-{purchase['id']}-{k}" for k in ("receipt", "commission", "statistics"))
    sent = [stack.log(f"copy-{i}") for i in range(3)]
    assert sum(line.count("purchase-") for line in sent) == 3, sent  # the three copies shared the work


def test_a_claim_of_a_killed_holder_is_taken_over_at_once(settings):
    with closing(store.connect(settings.database_path)) as conn:
        dead = subprocess.run([sys.executable, "-c", "from ebookstore import claims; print(claims.me())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        conn.execute("INSERT INTO claims (key, holder, token, expires_at) VALUES ('k', ?, 7, ?)", (dead, time.time() + 60))
        assert claims.claim(conn, "k", lease=60) == 8          # its holder is gone: ours, with the next token
        assert claims.holder_alive(claims.me())
        conn.execute("UPDATE claims SET holder = 'elsewhere/1/1.000' WHERE key = 'k'")
        assert claims.claim(conn, "k", lease=60) == claims.BUSY  # another machine's: its lease decides
        claims.release(conn, "k", 9)
        claims.record(conn, "k", 9)
        assert claims.claim(conn, "k", lease=60) == claims.DELIVERED


def test_the_relay_leaves_young_rows_to_the_web_app_and_claims_the_rest(settings, redis):
    with closing(store.connect(settings.database_path)) as conn:
        with store.transaction(conn):
            outbox.record(conn, "purchase-1-notification", "ebookstore.jobs.purchase_notification", [1], "critical")
        assert outbox.relay(conn, redis) == 0                     # younger than a few seconds: the web app's
        assert outbox.relay(conn, redis, min_age=0) == 1
        assert outbox.relay(conn, redis, min_age=0) == 0          # claimed: never enqueued twice
        assert not outbox.mark_enqueued(conn, "purchase-1-notification")
    assert queues.get_queue("critical", redis).job_ids == ["purchase-1-notification"]


def test_a_row_whose_request_found_redis_down_is_the_relays_at_once(settings, redis):
    """The young-row grace is for a request about to enqueue; one that found Redis down has given up."""
    # Nothing listens there; the store's client, which does not retry (redis-py's default would, for 4 s).
    down = queues.connect(settings.replace(external_redis_url=f"redis://127.0.0.1:{processes.free_port()}/0"))
    with closing(store.connect(settings.database_path)) as conn:
        during_outage = jobs.buy_and_notify(conn, down, 1, 1)
        with store.transaction(conn):  # a request that will enqueue its row itself, in a moment
            outbox.record(conn, "purchase-99-notification", "ebookstore.jobs.purchase_notification", [99], "critical")
        assert during_outage["jobs"] == []
        assert outbox.relay(conn, redis) == 1                     # young, but handed over: enqueued at once
        assert [row["job_id"] for row in outbox.pending(conn)] == ["purchase-99-notification"]  # still the web app's
    assert queues.get_queue("critical", redis).job_ids == [jobs.notification_job_id(during_outage["id"])]


def test_a_database_of_an_earlier_version_gets_the_new_columns(tmp_path):
    old = tmp_path / "old.sqlite3"
    with closing(sqlite3.connect(old)) as conn:  # the outbox as the course's first version made it
        conn.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, job_id TEXT NOT NULL UNIQUE, func TEXT NOT NULL, "
                     "args TEXT NOT NULL, queue TEXT NOT NULL, created_at TEXT NOT NULL, enqueued_at TEXT)")
        conn.execute("INSERT INTO outbox (job_id, func, args, queue, created_at) VALUES ('j', 'f', '[]', 'low', 'x')")
        conn.commit()
    with closing(store.connect(old)) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
        assert {"completed_at", "handed_over_at"} <= columns
        assert [row["job_id"] for row in outbox.pending(conn)] == ["j"]


def test_the_rescue_must_see_a_job_lost_twice(settings, redis):
    """Between BLPOP and "started" a live worker's job looks lost for a moment: one look is not enough."""
    with closing(store.connect(settings.database_path)) as conn:
        purchases = [jobs.buy_and_notify(conn, redis, 1, 1)["id"] for _ in range(2)]
        conn.execute("UPDATE outbox SET enqueued_at = '2000-01-01T00:00:00.000+00:00'")
        queue = queues.get_queue("critical", redis)
        for purchase in purchases:  # popped by a worker that has not marked them started yet
            redis.lrem(queue.key, 0, jobs.notification_job_id(purchase))
        suspects = {}
        assert outbox.rescue_lost(conn, redis, confirm_after=0.3, suspects=suspects) == 0
        assert outbox.where_is(redis, jobs.notification_job_id(purchases[0]), "critical").startswith("lost:")
        redis.hset(f"rq:job:{jobs.notification_job_id(purchases[0])}", "status", "started")  # it was only passing
        time.sleep(0.4)
        assert outbox.rescue_lost(conn, redis, confirm_after=0.3, suspects=suspects) == 1
        assert [row["job_id"] for row in outbox.pending(conn)] == [jobs.notification_job_id(purchases[1])]


def test_a_worker_rides_out_a_redis_restart(stack):
    """Redis killed mid-job and away for 6 s: the same worker process goes on and runs the next job."""
    settings = stack.settings.replace(external_redis_url=None, redis_port=processes.free_port())
    stack.settings = settings
    server = stack.redis()
    worker = stack.worker("steady", ["default"], with_scheduler=True, wait_ready=True)
    queues.get_queue("default", queues.connect(settings)).enqueue("ebookstore.course.demo_jobs.nap", 2)
    wait_until(lambda: processes.work_horse(worker), 10, what="the job to start")
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=5)
    time.sleep(6)                       # the worker's commands fail meanwhile: it waits and tries again
    stack.redis()
    job = queues.get_queue("default", queues.connect(settings)).enqueue("ebookstore.course.demo_jobs.nap", 0)
    try:
        wait_until(lambda: job.get_status(refresh=True) == "finished", 20, interval=0.2, what="the job after the restart")
    except TimeoutError as error:
        raise AssertionError(f"{error}; the worker's log ends:\n{stack.log('steady')}") from None
    assert worker.is_running() and not processes.gone(worker), stack.log("steady")
