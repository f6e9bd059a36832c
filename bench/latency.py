"""Purchase latency, side by side: `python bench/latency.py` (part of `make bench`).

Through the real HTTP server: the store sending its three emails inline through a slow
mail provider (300 ms per email, Chapter III's way) versus enqueueing them for a real worker.
Prints a table, then one JSON line.
"""
import json
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from ebookstore import jobs, queues, store
from ebookstore.config import Settings
from ebookstore.course import measure
from ebookstore.runtime import processes
from ebookstore.runtime.stack import Stack, new_tag

N = 100
MAIL_DELAY = 0.3


def main() -> dict:
    home = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    settings = Settings.from_env(home=home, redis_port=processes.free_port(), web_port=processes.free_port(),
                                 external_redis_url=None, smtp_url=None, mail_delay=MAIL_DELAY)
    inline = settings.replace(web_port=processes.free_port(), inline_emails=True)
    with Stack(settings, tag=new_tag("bench")) as stack:
        stack.redis()
        stack.web("web")
        stack.web("web-inline", inline)
        stack.worker("worker", with_scheduler=True)
        for url in (settings.web_url, inline.web_url):  # warm up: connections, imports
            measure.timed_purchase(url, 1, 1)
        enqueued = measure.purchase_latencies(settings.web_url, N)
        # Inline purchases take ~1 s each: 10 clients at a time keep the run short.
        inline_ms = measure.purchase_latencies(inline.web_url, N, concurrency=10)
        round_trips = count_round_trips(settings)
    fast, slow = measure.summary(enqueued), measure.summary(inline_ms)
    ratio = slow["p50_ms"] / fast["p50_ms"]
    print(f"purchase latency over HTTP, {N} purchases each, mail provider {MAIL_DELAY * 1000:.0f} ms per email")
    print(f"{'path':<22}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    for label, s in (("emails inline", slow), ("emails enqueued", fast)):
        print(f"{label:<22}{s['p50_ms']:>10.1f}{s['p95_ms']:>10.1f}{s['mean_ms']:>10.1f}")
    print(f"enqueued is {ratio:.0f}× faster at p50 (target ≥ 50×); Redis round trips per purchase: {round_trips}")
    result = {"bench": "latency", "n": N, "mail_delay_s": MAIL_DELAY, "inline": slow, "enqueued": fast,
              "p50_ratio": round(ratio, 1), "redis_round_trips_per_purchase": round_trips}
    print(json.dumps(result))
    return result


def count_round_trips(settings) -> int:
    """Round trips to Redis of one purchase, counted in-process on a warm connection."""
    connection = queues.connect(settings)
    with closing(store.connect(settings.database_path)) as conn:
        jobs.buy_and_notify(conn, connection, 1, 2)  # warm: connect, ask the server's version once
        with measure.counting_round_trips(connection) as sent:
            jobs.buy_and_notify(conn, connection, 2, 2)
    return len(sent)


if __name__ == "__main__":
    main()
    sys.exit(0)
