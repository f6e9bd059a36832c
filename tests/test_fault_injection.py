"""Fault injection: 200+ purchases while workers are SIGKILLed at random and Redis is killed and restarted.

At the end every purchase has exactly one receipt, one commission and one statistics email,
and no process is left. Everything is real: the HTTP web app, Redis, worker processes, the relay.
"""
import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest

from ebookstore import mail
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until

PURCHASES = 210
WORKERS = 3


def post_purchase(url, buyer_id, ebook_id):
    request = urllib.request.Request(url, method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"buyer_id": buyer_id, "ebook_id": ebook_id}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        return json.load(response)


def diagnose(settings, job_id):
    """Where a job is, to explain a failure."""
    from contextlib import closing

    from rq.job import Job

    from ebookstore import queues, store
    connection = queues.connect(settings)
    queue = queues.get_queue("critical", connection)
    places = {name: job_id in ids for name, ids in {
        "queue": queue.get_job_ids(), "intermediate": queue.intermediate_queue.get_job_ids(),
        "started": queue.started_job_registry.get_job_ids(), "scheduled": queue.scheduled_job_registry.get_job_ids(),
        "failed": queue.failed_job_registry.get_job_ids(), "finished": queue.finished_job_registry.get_job_ids()}.items()}
    try:
        job = Job.fetch(job_id, connection=connection, serializer=queues.SERIALIZER)
        info = f"status={job.get_status()} retries_left={job.retries_left} result={job.latest_result()}"
    except Exception as error:
        info = f"no job: {error}"
    with closing(store.connect(settings.database_path)) as conn:
        row = conn.execute("SELECT * FROM outbox WHERE job_id = ?", (job_id,)).fetchone()
    return f"{job_id}: {info}; in {[k for k, v in places.items() if v]}; outbox {dict(row) if row else None}"


@pytest.mark.timeout(90)
def test_no_email_lost_or_duplicated_under_kills(settings, stack):
    started = time.monotonic()
    settings = settings.replace(external_redis_url=None, redis_port=processes.free_port(), mail_delay=0.02)
    stack.settings = settings
    rng = random.Random(2026)
    redis_proc = stack.redis()
    stack.relay()
    stack.web()
    counter = iter(range(10_000))
    alive = {}

    def spawn():
        name = f"w{next(counter)}"
        alive[name] = stack.worker(name, with_scheduler=True)

    for _ in range(WORKERS):
        spawn()

    done = threading.Event()
    stats = Counter()

    def chaos():
        nonlocal redis_proc
        redis_killed = False
        while not done.is_set():
            time.sleep(rng.uniform(0.3, 0.8))
            for name, proc in list(alive.items()):   # a worker that crashed (say, Redis vanished) is replaced
                if processes.gone(proc):
                    del alive[name]
                    spawn()
            name = rng.choice(list(alive))
            victim = alive.pop(name)
            horse = processes.work_horse(victim)
            targets = [victim] + ([horse] if horse and rng.random() < 0.7 else [])  # a crash, or an orphaned horse
            for proc in targets:
                try:
                    proc.send_signal(signal.SIGKILL)
                except processes.psutil.NoSuchProcess:
                    pass
            stats["workers killed"] += 1
            stats["horses killed"] += len(targets) - 1
            spawn()
            if not redis_killed and stats["purchases"] >= PURCHASES // 2:
                redis_proc.send_signal(signal.SIGKILL)
                redis_proc.wait(timeout=5)
                time.sleep(1.0)                  # purchases go on while Redis is down
                redis_proc = stack.redis()
                redis_killed = True
                stats["redis restarts"] += 1

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    url = f"{settings.web_url}/api/purchases"
    purchases = []
    try:
        for i in range(PURCHASES):
            buyer = 1 + i % 2
            purchases.append(post_purchase(url, buyer, 1 + i % 4))
            stats["purchases"] += 1
            if not purchases[-1]["jobs"]:
                stats["purchases while Redis was down"] += 1
            time.sleep(0.02)
    finally:
        done.set()
        chaos_thread.join(timeout=10)
    for name, proc in list(alive.items()):
        if processes.gone(proc):
            spawn()

    expected = {f"purchase-{p['id']}-{kind}" for p in purchases for kind in ("receipt", "commission", "statistics")}

    def delivered():
        return Counter(m["key"] for m in mail.outbox(settings))

    try:
        wait_until(lambda: set(delivered()) >= expected, 45, interval=0.5, what="every email")
    except TimeoutError:
        missing = sorted(expected - set(delivered()))
        pytest.fail(f"{len(missing)} emails never arrived, e.g. {missing[:5]}; {dict(stats)}\n"
                    + "\n".join(diagnose(settings, key.rsplit("-", 1)[0] + "-notification") for key in missing[:3]))
    counts = delivered()
    stats["jobs rescued by the relay"] = stack.log("relay", 10_000).count("lost by killed workers")
    duplicated = {key: n for key, n in counts.items() if n > 1}
    wall = time.monotonic() - started
    print(f"\nfault injection: {dict(stats)}; {len(expected)} emails expected, {sum(counts.values())} delivered, "
          f"{len(duplicated)} duplicated; {wall:.1f} s")
    assert duplicated == {}
    assert set(counts) == expected
    assert stats["workers killed"] >= 5 and stats["redis restarts"] == 1
    assert wall <= 60
