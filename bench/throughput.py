"""Worker throughput, side by side: `python bench/throughput.py` (part of `make bench`).

Notification jobs per second for RQ's forking worker (the store's StoreWorker), the
non-forking SimpleWorker and a worker pool, each against a no-op job measured the
same way in the same run (the ceiling), plus the gain from 1 to 2 forking workers.
Rate = jobs ÷ (last job's end − first job's start), so worker start-up is not counted.
Prints a table, then one JSON line.
"""
import json
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from rq import Queue
from rq.job import Job

from ebookstore import jobs, queues, store
from ebookstore.config import Settings
from ebookstore.course import demo_jobs
from ebookstore.runtime import processes
from ebookstore.runtime.stack import Stack, new_tag
from ebookstore.workers import rq_executable

N = 240


def enqueue(connection, conn, kind: str) -> list[str]:
    queue = queues.get_queue("default", connection)
    if kind == "no-op":
        datas = [Queue.prepare_data("ebookstore.course.demo_jobs.nap", args=(0,)) for _ in range(N)]
    else:
        ids = [store.buy(conn, 1 + i % 2, 1 + i % 4)["id"] for i in range(N)]
        datas = [Queue.prepare_data(jobs.purchase_notification, args=(pid,)) for pid in ids]
    with connection.pipeline() as pipe:
        enqueued = queue.enqueue_many(datas, pipeline=pipe)
        pipe.execute()
    return [job.id for job in enqueued]


def rate(connection, ids) -> float:
    done = Job.fetch_many(ids, connection=connection, serializer=queues.SERIALIZER)
    if any(job is None or job.ended_at is None for job in done):
        raise RuntimeError("not every job ran")
    span = (max(j.ended_at for j in done) - min(j.started_at for j in done)).total_seconds()
    return len(done) / span


def run(stack, connection, kind, setup: str, conn) -> float:
    ids = enqueue(connection, conn, kind)
    base = ["--serializer", "json", "--burst"]  # the URL (and its password) come from RQ_REDIS_URL
    if setup == "pool ×2":
        procs = [stack.start("pool", [rq_executable(), "worker-pool", "default", "-n", "2",
                                      "-w", "ebookstore.workers.StoreWorker", *base])]
    else:
        count = 2 if setup.endswith("×2") else 1
        procs = [stack.worker(f"w{i}", ["default"], burst=True, simple=setup.startswith("SimpleWorker"))
                 for i in range(count)]
    for proc in procs:
        proc.wait(timeout=120)
    return rate(connection, ids)


def main() -> dict:
    home = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    settings = Settings.from_env(home=home, redis_port=processes.free_port(), external_redis_url=None,
                                 smtp_url=None, mail_delay=0.0)
    setups = ["Worker (forking)", "SimpleWorker", "pool ×2", "Worker ×2"]
    rates = {}
    with Stack(settings, tag=new_tag("bench"), preload=(demo_jobs.__name__,)) as stack, closing(store.connect(settings.database_path)) as conn:
        stack.redis()
        connection = queues.connect(settings)
        for setup in setups:
            for kind in ("no-op", "notification"):
                rates[(setup, kind)] = run(stack, connection, kind, setup, conn)
    print(f"worker throughput, jobs/s ({N} jobs per run; notification = 1 DB read + 3 emails into the Maildir)")
    print(f"{'worker':<18}{'no-op':>10}{'notification':>14}{'of ceiling':>12}")
    figures = {}
    for setup in setups:
        noop, notify = rates[(setup, "no-op")], rates[(setup, "notification")]
        print(f"{setup:<18}{noop:>10.0f}{notify:>14.0f}{notify / noop:>11.0%}")
        figures[setup] = {"noop_per_s": round(noop, 1), "notification_per_s": round(notify, 1),
                          "share_of_ceiling": round(notify / noop, 2)}
    gain = rates[("Worker ×2", "notification")] / rates[("Worker (forking)", "notification")]
    print(f"1 → 2 forking workers: ×{gain:.2f} notification jobs/s on this {len(__import__('os').sched_getaffinity(0))}-core machine "
          f"(target: notification ≥ 70 % of the no-op ceiling)")
    result = {"bench": "throughput", "n": N, "workers": figures, "gain_1_to_2_workers": round(gain, 2)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
