"""Exercise 05 — running workers and the dashboard: follow a job from queued to finished.

Notebook: notebooks/05_running_workers_and_dashboard.ipynb · check: check("ex05") or `ebookstore check ex05`
"""
import base64
import json
import urllib.request

from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry


def where_is(redis: Redis, queue_name: str, job_id: str) -> str:
    """Where job `job_id` of queue `queue_name` is now: "queued", "started", "finished", "failed" or "unknown"
    (in none of them: also a job of another queue).

    Answer from the queue itself and its registries (StartedJobRegistry,
    FinishedJobRegistry, FailedJobRegistry), not from the job's status field:
    the registries are what the dashboard and the workers look at.
    """
    queue = Queue(queue_name, connection=redis)
    if job_id in queue.get_job_ids():
        return "queued"
    for state, registry in (("started", StartedJobRegistry), ("finished", FinishedJobRegistry),
                            ("failed", FailedJobRegistry)):
        if job_id in registry(queue=queue).get_job_ids():
            return state
    return "unknown"


def dashboard_counts(base_url: str, user: str, password: str, timeout: float = 5.0) -> dict[str, int]:
    """{queue name: jobs waiting} as the dashboard shows it (every queue it lists, empty ones too, counts as
    ints), read from its JSON endpoint.

    The dashboard at `base_url` (e.g. http://127.0.0.1:8808/jobs) serves
    /0/data/queues.json behind basic authentication. Give up after `timeout`
    seconds. A refusal (wrong password: 401) or a timeout raises: never
    answer {} for a dashboard you could not read.
    """
    request = urllib.request.Request(f"{base_url}/0/data/queues.json")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = json.load(response)
    return {queue["name"]: queue["count"] for queue in data["queues"]}
