"""Exercise 02 — Redis and RQ set-up: start redis-server and an rq worker from Python.

Notebook: notebooks/02_redis_and_rq_setup.ipynb · check: check("ex02") or `ebookstore check ex02`
"""
import subprocess
import time
from pathlib import Path

from redis import Redis


def start_redis(server: str, port: int, data_dir: Path, timeout: float = 10.0) -> subprocess.Popen:
    """Start `server` (a redis-server binary) and return its process once it answers PING.

    It must listen on 127.0.0.1 only, on `port`, keep its files in `data_dir`
    (create the folder if it is missing) and use append-only persistence.
    Return as soon as it answers (ask again every few hundredths of a second).
    If it does not answer within `timeout` seconds, stop it and raise TimeoutError.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
         "--appendonly", "yes", "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not ping(f"redis://127.0.0.1:{port}/0"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise TimeoutError(f"redis-server did not answer on port {port}")
        time.sleep(0.05)
    return process


def ping(redis_url: str) -> bool:
    """True if a Redis answers PING at `redis_url`, False if none does (never raise, never hang)."""
    try:
        return bool(Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except Exception:
        return False


def worker_command(rq: str, queues: list[str], name: str) -> list[str]:
    """The command line (a list) of an RQ worker that exits once its queues are empty.

    `rq` is the path of the rq command; the worker reads `queues` in that
    order (all of them first to last: the first has priority), is called
    `name`, and reads jobs with the JSON serializer (the store's queues are
    JSON, not pickle). Where Redis is, password included, the worker reads
    from RQ_REDIS_URL in its environment: never put the URL on the command
    line, where `ps` shows it to every user.
    """
    return [rq, "worker", *queues, "--serializer", "json", "--name", name, "--burst"]
