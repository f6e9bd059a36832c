"""The `ebookstore` command, run as a learner would: up, status, buy, outbox, down, killport."""
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from ebookstore.course import specimens
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until
from ebookstore.runtime.stack import stop_everything

EBOOKSTORE = str(Path(sys.executable).parent / "ebookstore")


def http(method, url, body=None, user=None):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None
                                     else None, headers={"Content-Type": "application/json"})
    if user:
        request.add_header("Authorization", "Basic " + base64.b64encode(user.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def cli_env(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "EBOOKSTORE_HOME": str(home), "EBOOKSTORE_REDIS_PORT": str(processes.free_port()),
           "EBOOKSTORE_WEB_PORT": str(processes.free_port()), "EBOOKSTORE_SMTP_PORT": str(processes.free_port()),
           "EBOOKSTORE_DASHBOARD_USER": "tutor", "EBOOKSTORE_DASHBOARD_PASSWORD": "s3cret"}
    env.pop("REDIS_URL", None)
    yield env
    stop_everything(home, timeout=3)  # whatever the test did, nothing it started survives


def run(env, *args, timeout=30):
    return subprocess.run([EBOOKSTORE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_up_buy_outbox_down(cli_env):
    web = f"http://127.0.0.1:{cli_env['EBOOKSTORE_WEB_PORT']}"
    up = run(cli_env, "up")
    assert up.returncode == 0, up.stderr
    assert "password s3cret" in up.stdout and "redis-server" in up.stdout

    again = run(cli_env, "up")
    assert again.returncode == 1 and "already up" in again.stdout

    status = run(cli_env, "status").stdout
    for part in ["redis-server", "rq worker", "ebookstore.cron", "ebookstore.cli relay", "flask", "aiosmtpd"]:
        assert part in status, status

    assert len(json.loads(http("GET", f"{web}/api/ebooks")[1])) == 4
    assert len(json.loads(http("GET", f"{web}/api/users")[1])) == 4
    http("POST", f"{web}/api/purchases", {"buyer_id": 2, "ebook_id": 2})  # warm up the connection
    started = time.perf_counter()
    code, body = http("POST", f"{web}/api/purchases", {"buyer_id": 1, "ebook_id": 1})
    answer_ms = (time.perf_counter() - started) * 1000
    assert code == 201 and answer_ms < 100, (code, answer_ms)
    purchase_id = json.loads(body)["id"]

    def emails():
        box = json.loads(run(cli_env, "outbox", "--json").stdout)
        return {m["key"] for m in box} >= {f"purchase-{purchase_id}-receipt", f"purchase-{purchase_id}-commission"}
    started = time.perf_counter()
    wait_until(emails, 15, interval=0.2, what="the purchase emails")
    print(f"purchase answered in {answer_ms:.1f} ms; emails in the outbox after {time.perf_counter() - started:.2f} s")

    assert http("POST", f"{web}/api/purchases", {"buyer_id": 1, "ebook_id": 99})[0] == 404
    request = urllib.request.Request(f"{web}/api/purchases", data=b"{oops", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5)
    assert error.value.code == 400
    assert http("GET", f"{web}/jobs/")[0] == 401
    assert http("GET", f"{web}/jobs/", user="tutor:s3cret")[0] == 200

    buy = run(cli_env, "buy", "2", "3")
    assert buy.returncode == 0 and json.loads(buy.stdout)["ebook_id"] == 3
    bad = run(cli_env, "buy", "1", "99")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no ebook" in bad.stderr

    down = run(cli_env, "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert "no course process" in run(cli_env, "status").stdout
    left = [p for p in psutil.process_iter() if processes.environ(p).get("EBOOKSTORE_HOME") == cli_env["EBOOKSTORE_HOME"]]
    assert left == []


def test_up_refuses_a_taken_port(cli_env):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(cli_env["EBOOKSTORE_WEB_PORT"])))
        squatter.listen()
        up = run(cli_env, "up")
    assert up.returncode == 1
    assert f"port {cli_env['EBOOKSTORE_WEB_PORT']} is already in use" in up.stderr
    assert "Traceback" not in up.stderr
    assert "no course process" in run(cli_env, "status").stdout  # what did start was stopped again


def test_killport_stops_the_listener_not_its_client(cli_env, stack):
    port = processes.free_port()
    server = specimens.listener(stack, port)
    client = specimens.client(stack, port)
    result = run(cli_env, "killport", str(port))
    assert result.returncode == 0, result.stderr
    assert f"PID {server.pid}" in result.stdout
    assert processes.gone(server)
    assert not processes.gone(client)
    assert run(cli_env, "killport", str(port)).returncode == 1  # nothing listens any more


def test_a_port_held_by_the_course_points_to_ebookstore_down_not_killport(cli_env, stack):
    web = stack.web(settings=stack.settings.replace(web_port=int(cli_env["EBOOKSTORE_WEB_PORT"])))
    up = run(cli_env, "up")
    assert up.returncode == 1
    assert "the course's own web" in up.stderr and "ebookstore down" in up.stderr and "clean-up cell" in up.stderr
    assert "killport" not in up.stderr
    assert not processes.gone(web), "the course's own process is left alone"
