"""Measuring the store: purchase latency over HTTP, Redis round trips, percentiles.

Used by notebook 01 and by `make bench` (bench/latency.py), so both measure the same way.
"""
from __future__ import annotations

import json
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0–100) of `values`, interpolated."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summary(values_ms: list[float]) -> dict:
    return {"n": len(values_ms), "p50_ms": round(percentile(values_ms, 50), 2),
            "p95_ms": round(percentile(values_ms, 95), 2), "mean_ms": round(statistics.fmean(values_ms), 2)}


def timed_purchase(web_url: str, buyer_id: int, ebook_id: int) -> float:
    """POST one purchase to the store's API; return the response time in ms (raises unless 201)."""
    body = json.dumps({"buyer_id": buyer_id, "ebook_id": ebook_id}).encode()
    request = urllib.request.Request(f"{web_url}/api/purchases", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        if response.status != 201:
            raise RuntimeError(f"purchase answered {response.status}")
    return (time.perf_counter() - started) * 1000


def purchase_latencies(web_url: str, n: int, concurrency: int = 1) -> list[float]:
    """Response times (ms) of `n` purchases, `concurrency` clients at a time."""
    pairs = [(1 + i % 2, 1 + i % 4) for i in range(n)]  # users 1 and 2 buy the four ebooks in turn
    if concurrency == 1:
        return [timed_purchase(web_url, b, e) for b, e in pairs]
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda pair: timed_purchase(web_url, *pair), pairs))


@contextmanager
def counting_round_trips(connection):
    """Count the requests `connection` sends to Redis (a pipeline is one) inside the block: yields a list."""
    connection_class = connection.connection_pool.connection_class
    real = connection_class.send_packed_command
    sent: list = []

    def counting(self, command, check_health=True):
        sent.append(command)
        return real(self, command, check_health)

    connection_class.send_packed_command = counting
    try:
        yield sent
    finally:
        connection_class.send_packed_command = real
