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


def redis_cli():
    from ebookstore.runtime import redis_server
    return redis_server.cli_path(redis_server.find()[0])


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
    for part in ["redis-server", "rq worker", "ebookstore.cron", "ebookstore.cli relay", "waitress-serve", "aiosmtpd",
                 "ebookstore.cli workers", " worker-1 ", " worker-2 "]:
        assert part in status, status

    # Locked down: Redis wants the password, which no process shows on its command line.
    password = (Path(cli_env["EBOOKSTORE_HOME"]) / "redis-password").read_text().strip()
    assert (Path(cli_env["EBOOKSTORE_HOME"]) / "redis-password").stat().st_mode & 0o077 == 0
    cli = redis_cli()
    port = cli_env["EBOOKSTORE_REDIS_PORT"]
    no_auth = subprocess.run([cli, "-p", port, "ping"], capture_output=True, text=True, timeout=10,
                             env={k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"})
    assert "NOAUTH" in no_auth.stdout + no_auth.stderr
    with_auth = subprocess.run([cli, "-p", port, "ping"], capture_output=True, text=True, timeout=10,
                               env={**os.environ, "REDISCLI_AUTH": password})
    assert with_auth.stdout.strip() == "PONG"
    shown = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
    assert not [line for line in shown if password in line]

    assert len(json.loads(http("GET", f"{web}/api/ebooks")[1])) == 4
    assert len(json.loads(http("GET", f"{web}/api/users")[1])) == 4
    http("POST", f"{web}/api/purchases", {"buyer_id": 2, "ebook_id": 2})  # warm up the connection
    started = time.perf_counter()
    code, body = http("POST", f"{web}/api/purchases", {"buyer_id": 1, "ebook_id": 1})
    answer_ms = (time.perf_counter() - started) * 1000
    assert code == 201, (code, body)  # how fast: `make bench` (bench/latency.py), not a pass/fail under load
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


@pytest.mark.parametrize("args, says", [
    (["buy", "1", "9223372036854775808"], "out of range"),
    (["buy", "-9223372036854775809", "1"], "out of range"),
    (["buy", "1", "x" * 5000], "not an integer"),
    (["buy", "1"], "required"),
    (["worker", "--queues", "nosuchqueue"], "known queues: critical, default, low"),
    (["worker", "--queues", "critical,nosuchqueue"], "unknown queue nosuchqueue"),
    (["workers", "--count", "two"], "invalid int"),
    (["nosuchcommand"], "invalid choice"),
])
def test_a_cli_mistake_is_one_line_and_exit_2(cli_env, args, says):
    result = run(cli_env, *args)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and says in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr) < 300  # a long argument is not echoed whole


def test_up_heals_itself(cli_env):
    """kill -9 of a worker mid-job: the emails arrive once, within 20 s; a dead process is started again by up."""
    env = {**cli_env, "EBOOKSTORE_MAIL_DELAY": "1"}  # 3 s per purchase: time to kill it halfway
    assert run(env, "up").returncode == 0
    home = Path(env["EBOOKSTORE_HOME"])
    purchase = json.loads(run(env, "buy", "1", "3").stdout)["id"]

    def busy_worker():
        for proc in psutil.process_iter():
            if processes.role(proc) == "work-horse" and processes.environ(proc).get("EBOOKSTORE_HOME") == str(home):
                return proc.parent(), proc
    worker, horse = wait_until(busy_worker, 10, what="a worker running the job")
    time.sleep(0.5)
    for proc in (worker, horse):
        proc.send_signal(9)
    killed_at = time.monotonic()
    keys = {f"purchase-{purchase}-{kind}" for kind in ("receipt", "commission", "statistics")}

    def emails():
        return [m["key"] for m in json.loads(run(env, "outbox", "--json").stdout)]
    wait_until(lambda: set(emails()) >= keys, 20, interval=0.2, what="the purchase's emails")
    print(f"\nkill -9 of an `up` worker mid-job: its emails arrived {time.monotonic() - killed_at:.1f} s later")
    time.sleep(2)
    assert sorted(emails()) == sorted(keys), "each email exactly once"
    status = run(env, "status").stdout
    assert " worker-1 " in status and " worker-2 " in status  # the supervisor started the dead one again

    relay = next(p for p in psutil.process_iter() if processes.environ(p).get("EBOOKSTORE_PROCESS") == "relay"
                 and processes.environ(p).get("EBOOKSTORE_HOME") == str(home))
    relay.kill()
    relay.wait(5)
    again = run(env, "up")
    assert again.returncode == 0 and "starting relay again" in again.stdout, again.stdout
    assert "ebookstore.cli relay" in run(env, "status").stdout


def test_a_redis_started_by_hand_is_tagged_and_stopped_by_down(cli_env):
    redis = subprocess.Popen([EBOOKSTORE, "redis"], env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = int(cli_env["EBOOKSTORE_REDIS_PORT"])
        wait_until(lambda: processes.listener_pid(port), 10, what="redis")
        proc = psutil.Process(redis.pid)
        assert processes.environ(proc)[processes.RUN_TAG].startswith("cli-")
        assert "redis-server" in run(cli_env, "status").stdout
        assert "stopped 1 process" in run(cli_env, "down").stdout
        assert redis.wait(5) is not None
    finally:
        if redis.poll() is None:
            redis.kill()
            redis.wait(5)
