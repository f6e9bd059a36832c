"""Web latency under concurrency: `python bench/web_latency.py` (part of `make bench`).

POST /api/purchases from 20 clients at once, 400 purchases, against the two ways to serve
the store: Flask's development server (`flask run`, a thread per request) and waitress
(a production WSGI server, a fixed pool of threads), both on 127.0.0.1. Prints p50/p95 of
each, then one JSON line.
"""
import json
import sys
import tempfile
from pathlib import Path

from ebookstore.config import Settings
from ebookstore.course import measure
from ebookstore.runtime import processes
from ebookstore.runtime.stack import Stack, new_tag

CLIENTS = 20
N = 400


def main() -> dict:
    home = Path(tempfile.mkdtemp(prefix="bench-web-"))
    settings = Settings.from_env(home=home, redis_port=processes.free_port(), external_redis_url=None,
                                 smtp_url=None, mail_delay=0.0)
    results = {}
    with Stack(settings, tag=new_tag("bench")) as stack:
        stack.redis()
        for server in ("flask", "waitress"):
            web = settings.replace(web_port=processes.free_port())
            stack.web(f"web-{server}", web, server=server)
            measure.purchase_latencies(web.web_url, 40, concurrency=CLIENTS)  # warm up
            results[server] = measure.summary(measure.purchase_latencies(web.web_url, N, concurrency=CLIENTS))
            stack.stop(f"web-{server}")
    print(f"{'server':<10} {'p50':>8} {'p95':>8}   ({N} purchases, {CLIENTS} clients at once)")
    for server, figures in results.items():
        print(f"{server:<10} {figures['p50_ms']:>6.1f} ms {figures['p95_ms']:>6.1f} ms")
    line = {"bench": "web_latency", "clients": CLIENTS, **results}
    print(json.dumps(line))
    return line


if __name__ == "__main__":
    main()
    sys.exit(0)
