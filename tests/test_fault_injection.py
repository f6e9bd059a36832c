"""Exactly once under load and faults, the way a learner runs the store.

Real HTTP purchases from 20 concurrent clients, a mail provider that takes 0.2 s per
email (real SMTP to the mail catcher, which keeps every duplicate), several workers
kept alive by supervisord (`ebookstore workers`: nothing is started by hand), the
relay. Then, in one test, random SIGKILLs of workers and work-horses and one SIGKILL
and restart of Redis. At the end every purchase has exactly one receipt, one
commission and one statistics email, and no process is left.

Run the series: `EBOOKSTORE_FAULT_RUNS=10 pytest -s tests/test_fault_injection.py -k kills`
(each run prints one line of figures; the seed changes per run). The 500-purchase test without
faults takes 100 s, so `make test` leaves it out: `EBOOKSTORE_LONG_TESTS=1 pytest -s -k 500 tests/test_fault_injection.py`.
"""
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from ebookstore import mail
from ebookstore.runtime import processes
from ebookstore.runtime.processes import PROCESS_NAME, wait_until

CLIENTS = 20
MAIL_DELAY = 0.2
KINDS = ("receipt", "commission", "statistics")
RUNS = int(os.environ.get("EBOOKSTORE_FAULT_RUNS") or 1)


def post_purchase(url, buyer_id, ebook_id):
    request = urllib.request.Request(url, method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"buyer_id": buyer_id, "ebook_id": ebook_id}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
        return json.load(response)


def start_store(stack, settings, workers):
    """Redis, mail catcher, relay, web, and supervisord with `workers` workers (`ebookstore workers`)."""
    settings = settings.replace(external_redis_url=None, redis_port=processes.free_port(), mail_delay=MAIL_DELAY,
                                smtp_url=f"smtp://127.0.0.1:{settings.smtp_port}", workers=workers)
    stack.settings = settings
    redis_proc = stack.redis()
    stack.mail()
    stack.relay()
    stack.web()
    stack.start("workers", [sys.executable, "-m", "ebookstore.cli", "workers", "--count", str(workers)])
    wait_until(lambda: len(live_workers(stack)) == workers, 20, what=f"{workers} workers")
    return settings, redis_proc


def live_workers(stack):
    return [p for p in stack.processes() if processes.environ(p).get(PROCESS_NAME, "").startswith("worker-")
            and processes.role(p) == "worker"]


def buy_concurrently(settings, count, stats):
    """`count` purchases over HTTP from CLIENTS threads at once."""
    url = f"{settings.web_url}/api/purchases"

    def one(i):
        purchase = post_purchase(url, 1 + i % 2, 1 + i % 4)
        stats["purchases"] += 1
        if not purchase["jobs"]:
            stats["purchases while Redis was down"] += 1
        return purchase
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(count)))


def expected_keys(purchases):
    return {f"purchase-{p['id']}-{kind}" for p in purchases for kind in KINDS}


def delivered(settings):
    return Counter(m["key"] for m in mail.outbox(settings))


def wait_for_every_email(settings, expected, deadline, stats):
    try:
        wait_until(lambda: set(delivered(settings)) >= expected, max(1, deadline - time.monotonic()),
                   interval=0.5, what="every email")
    except TimeoutError:
        missing = sorted(expected - set(delivered(settings)))
        jobs = sorted({key.rsplit("-", 1)[0] + "-notification" for key in missing})
        pytest.fail(f"{len(missing)} emails never arrived, e.g. {missing[:5]}; {dict(stats)}\n"
                    + "\n".join(diagnose(settings, job_id) for job_id in jobs[:5]))
    time.sleep(3)  # a late duplicate would arrive now
    return delivered(settings)


def diagnose(settings, job_id):
    """Where a job is, to explain a failure."""
    from contextlib import closing

    from rq.job import Job

    from ebookstore import outbox, queues, store
    connection = queues.connect(settings)
    try:
        job = Job.fetch(job_id, connection=connection, serializer=queues.SERIALIZER)
        info = f"status={job.get_status()} retries_left={job.retries_left} result={job.latest_result()}"
    except Exception as error:
        info = f"no job: {error}"
    with closing(store.connect(settings.database_path)) as conn:
        row = conn.execute("SELECT * FROM outbox WHERE job_id = ?", (job_id,)).fetchone()
    return f"{job_id}: {info}; {outbox.where_is(connection, job_id, 'critical')}; outbox {dict(row) if row else None}"


def report(label, purchases, counts, expected, stats, seconds):
    duplicated = {key: n for key, n in counts.items() if n > 1}
    lost = expected - set(counts)
    print(f"\n{label}: purchases {len(purchases)}, emails {sum(counts.values())} (expected {len(expected)}), "
          f"kills {stats['workers killed']} workers + {stats['horses killed']} horses "
          f"(+{stats['redis restarts']} Redis), duplicates {len(duplicated)}, lost {len(lost)}, "
          f"{seconds:.1f} s; {dict(stats)}")
    return duplicated, lost


# Loads the machine (20 clients, 9 workers, kills): not beside the parallel tests, but beside the other heavy
# groups, the checks under CPU burners (see the Makefile). Nine workers, not four: more jobs in flight at each
# kill, and the 900 emails at 0.2 s each drain sooner. Alone: four workers 70 s, six 48 s, nine 38.5 s; beside
# the two halves of that group, each with one busy loop: six 62-70 s, nine 61 s (measured 2026-12-01/02).
@pytest.mark.heavy
@pytest.mark.xdist_group("faults")
@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.timeout(240)
def test_no_email_lost_or_duplicated_under_kills(settings, stack, run):
    """≥3 workers, 0.2 s per email, 20 clients, 300 purchases, random SIGKILLs, Redis killed once."""
    purchases_wanted, workers = 300, 9
    settings, redis_proc = start_store(stack, settings, workers)
    rng = random.Random(2026 + run)
    stats, done = Counter(), threading.Event()

    def chaos():
        nonlocal redis_proc
        while not done.wait(rng.uniform(1.5, 3.0)):
            alive = live_workers(stack)
            if not alive:
                continue
            victim = rng.choice(alive)
            horse = processes.work_horse(victim)
            roll = rng.random()
            if horse and roll < 0.25:
                targets = [horse]                      # the job's process dies, its worker lives on
            elif horse and roll < 0.8:
                targets = [victim, horse]              # a crash of the whole worker
            else:
                targets = [victim]                     # the worker dies; its horse runs on, orphaned
            for proc in targets:
                try:
                    proc.send_signal(signal.SIGKILL)
                except processes.psutil.NoSuchProcess:
                    pass
            stats["workers killed"] += victim in targets
            stats["horses killed"] += horse in targets if horse else 0
            if not stats["redis restarts"] and stats["purchases"] >= purchases_wanted // 2:
                redis_proc.send_signal(signal.SIGKILL)
                redis_proc.wait(timeout=5)
                time.sleep(1.0)                        # purchases go on while Redis is down
                redis_proc = stack.redis()
                stats["redis restarts"] += 1

    started = time.monotonic()
    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    try:
        purchases = buy_concurrently(settings, purchases_wanted, stats)
        # Faults go on while the backlog drains, until the Redis restart has happened.
        wait_until(lambda: stats["redis restarts"], 30, interval=0.2, what="the Redis restart")
        expected = expected_keys(purchases)
        wait_until(lambda: len(delivered(settings)) >= len(expected) * 0.8 or time.monotonic() - started > 90,
                   100, interval=0.5, what="most emails")
        # On a quick host nine workers can reach 80 % before chaos (one kill every 1.5-3 s) has made ten.
        wait_until(lambda: stats["workers killed"] + stats["horses killed"] >= 10, 60, interval=0.2, what="ten kills")
    finally:
        done.set()
        chaos_thread.join(timeout=30)
    counts = wait_for_every_email(settings, expected, started + 120, stats)
    seconds = time.monotonic() - started - 3
    stats["jobs rescued by the relay"] = stack.log("relay", 10_000).count("lost by killed workers")
    stats["workers restarted"] = stack.log("supervisord", 10_000).count("exited: worker-")
    duplicated, lost = report(f"fault injection run {run + 1}", purchases, counts, expected, stats, seconds)
    assert duplicated == {} and lost == set()
    assert stats["workers killed"] + stats["horses killed"] >= 10 and stats["redis restarts"] == 1
    assert seconds <= 120


@pytest.mark.heavy
@pytest.mark.xdist_group("faults")
@pytest.mark.timeout(240)
@pytest.mark.skipif(not os.environ.get("EBOOKSTORE_LONG_TESTS"),
                    reason="100 s: run with EBOOKSTORE_LONG_TESTS=1 (the fault test above covers CI)")
def test_four_workers_500_purchases_no_duplicates(settings, stack):
    """No fault at all, but several workers, a slow mail provider and 20 clients at once: each email once."""
    settings, _ = start_store(stack, settings, workers=4)
    stats = Counter()
    started = time.monotonic()
    purchases = buy_concurrently(settings, 500, stats)
    expected = expected_keys(purchases)
    counts = wait_for_every_email(settings, expected, started + 150, stats)
    duplicated, lost = report("4 workers, 500 purchases, no faults", purchases, counts, expected, stats,
                              time.monotonic() - started - 3)
    assert duplicated == {} and lost == set()
