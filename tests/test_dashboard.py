"""The RQ dashboard, locked down: it never unpickles, and its actions need a same-origin POST."""
import base64
import pickle
from pathlib import Path

import pytest

from ebookstore import queues
from ebookstore.runtime.processes import wait_until
from ebookstore.web import create_app

LOGIN = {"Authorization": "Basic " + base64.b64encode(b"tutor:test-password").decode()}
HERE = {"Origin": "http://localhost"}  # the test client's own host


class Booby:
    """Unpickling this creates a file: proof that someone unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (Path(self.path),)


@pytest.fixture
def client(settings):
    return create_app(settings).test_client()


def test_no_route_unpickles_a_crafted_job(client, redis, tmp_path):
    marker = tmp_path / "unpickled"
    job = queues.get_queue("default", redis).enqueue("ebookstore.course.demo_jobs.nap", 0)
    redis.hset(f"rq:job:{job.id}", "meta", pickle.dumps(Booby(str(marker))))
    queues.get_queue("default", redis).failed_job_registry.add(job, ttl=600)
    requests = [
        ("GET", f"/jobs/0/view/job/{job.id}"), ("GET", f"/jobs/0/data/job/{job.id}.json"),
        ("GET", "/jobs/0/data/jobs/default/queued/8/asc/1.json"), ("GET", "/jobs/0/data/workers.json"),
        ("GET", "/jobs/0/view/workers"), ("POST", f"/jobs/job/{job.id}/requeue"),
        ("POST", "/jobs/requeue/default"), ("POST", f"/jobs/job/{job.id}/delete"),
    ]
    for method, url in requests:
        client.open(url, method=method, headers={**LOGIN, **HERE})
        assert not marker.exists(), f"{method} {url} unpickled job data"


def test_actions_need_post_from_the_dashboard_itself(client, redis):
    assert client.get("/jobs/requeue/default", headers=LOGIN).status_code == 405
    assert client.post("/jobs/requeue/default", headers=LOGIN).status_code == 403
    assert client.post("/jobs/requeue/default", headers={**LOGIN, "Origin": "https://evil.test"}).status_code == 403
    assert client.post("/jobs/requeue/default", headers={**LOGIN, "Referer": "http://localhost/jobs/"}).status_code == 200
    answer = client.post("/jobs/requeue/default", headers={**LOGIN, **HERE})
    assert answer.status_code == 200 and answer.json["status"] == "OK"
    assert client.post("/jobs/requeue/default", headers=HERE).status_code == 401


def test_workers_json_works_while_a_job_runs(client, stack, redis):
    queues.get_queue("default", redis).enqueue("ebookstore.course.demo_jobs.nap", 5)
    worker = stack.worker("busy", ["default"], wait_ready=True)
    from ebookstore.runtime import processes
    wait_until(lambda: processes.work_horse(worker), 10, what="the job to start")
    answer = client.get("/jobs/0/data/workers.json", headers=LOGIN)
    assert answer.status_code == 200
    busy = [w for w in answer.json["workers"] if w["name"].endswith(".busy")]
    assert busy and busy[0]["current_job"]["description"].startswith("ebookstore.course.demo_jobs.nap")
