"""Nothing lost, nothing sent twice: kill -9 recovery, idempotent emails, the outbox, Redis restarts."""
import signal
import time
from contextlib import closing

from ebookstore import jobs, mail, outbox, queues, store
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until


def keys_of(settings, purchase_id):
    return sorted(m["key"] for m in mail.outbox(settings) if m["key"].startswith(f"purchase-{purchase_id}-"))


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
    assert job.get_status() == "finished"
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
        assert len(outbox.pending(conn)) == 3                       # …but recorded
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
