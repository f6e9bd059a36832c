"""The `ebookstore` command, run as a learner would: up, status, buy, outbox, down, killport."""
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from ebookstore import mail
from ebookstore.config import Settings
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


@pytest.mark.timeout(240)  # `down` alone may take WORKER_GRACE and more (see below)
def test_up_buy_outbox_down(cli_env):
    web = f"http://127.0.0.1:{cli_env['EBOOKSTORE_WEB_PORT']}"
    up = run(cli_env, "up")
    assert up.returncode == 0, up.stderr
    assert "password s3cret" in up.stdout and "redis-server" in up.stdout

    again = run(cli_env, "up")
    assert again.returncode == 1 and "already up" in again.stdout

    status = run(cli_env, "status").stdout
    for part in ["redis-server", "rq worker", "ebookstore.cli cron", "ebookstore.cli relay", "waitress-serve", "aiosmtpd",
                 "supervisord", " worker-1 ", " worker-2 "]:
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

    # supervisord gives each worker WORKER_GRACE (30 s) to finish its job before SIGKILL: `down` may take that
    # long, and now and then, on a busy machine, it does with no job running (not yet explained; see the README).
    down = run(cli_env, "down", timeout=90)
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


def course_processes(home) -> list:
    return [p for p in psutil.process_iter() if processes.environ(p).get("EBOOKSTORE_HOME") == str(home)
            and processes.environ(p).get(processes.RUN_TAG) and not processes.gone(p)]


# Every subcommand, with a mistake in it: (arguments, what the one line on stderr must name).
USAGE_MISTAKES = [
    (["up", "--nosuch"], "unrecognized arguments"),
    (["down", "--timeout", "-1"], "0 or more"),
    (["down", "--timeout", "soon"], "0 or more"),
    (["status", "extra"], "unrecognized arguments"),
    (["worker", "--queues", "nosuchqueue"], "known queues: critical, default, low"),
    (["worker", "--queues", "critical,nosuchqueue"], "unknown queue nosuchqueue"),
    (["workers", "--count", "two"], "1 or more"),
    (["workers", "--count", "0"], "1 or more"),
    (["workers", "--count", "-1"], "1 or more"),
    (["cron", "--every", "1"], "unrecognized arguments"),
    (["redis", "--port", "1"], "unrecognized arguments"),
    (["relay", "x"], "unrecognized arguments"),
    (["mail", "x"], "unrecognized arguments"),
    (["web", "--server", "gunicorn"], "choose from 'waitress', 'flask'"),
    (["buy", "1", "9223372036854775808"], "out of range"),
    (["buy", "-9223372036854775809", "1"], "out of range"),
    (["buy", "1", "x" * 5000], "not an integer"),
    (["buy", "1"], "required"),
    (["outbox", "--xml"], "unrecognized arguments"),
    (["killport", "99999"], "1 to 65535"),
    (["killport", "65536"], "1 to 65535"),
    (["killport", "0"], "1 to 65535"),
    (["killport", "-1"], "1 to 65535"),
    (["killport", "http"], "1 to 65535"),
    (["killport", "8080", "--timeout", "-5"], "0 or more"),
    (["check", "ex99"], "exercises: ex01, ex02"),
    (["check", "EX01"], "exercises: ex01, ex02"),
    (["check", "../../etc/passwd"], "exercises: ex01, ex02"),
    (["check", "--exercises", "/no/such/folder"], "no such folder"),
    (["grade", "--only", "ex04,ex99", "."], "exercises: ex01, ex02"),
    (["grade", "--jobs", "0", "."], "1 or more"),
    (["grade", "--timeout", "0", "."], "above 0"),
    (["nosuchcommand"], "invalid choice"),
]


@pytest.mark.parametrize("args, says", USAGE_MISTAKES, ids=[" ".join(a)[:40] for a, _ in USAGE_MISTAKES])
def test_a_cli_mistake_is_one_line_on_stderr_exit_2_and_starts_nothing(cli_env, args, says):
    result = run(cli_env, *args)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and says in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    assert len(result.stderr) < 300  # a long argument is not echoed whole
    assert course_processes(cli_env["EBOOKSTORE_HOME"]) == []


def test_every_subcommand_has_a_usage_mistake_in_the_test_above():
    from ebookstore.cli import parser
    commands = set(next(a for a in parser()._actions if a.dest == "command").choices)
    assert commands <= {args[0] for args, _ in USAGE_MISTAKES}


@pytest.mark.parametrize("variable, value", [("EBOOKSTORE_WEB_PORT", "70000"), ("EBOOKSTORE_REDIS_PORT", "redis"),
                                             ("EBOOKSTORE_WORKERS", "0"), ("EBOOKSTORE_QUEUE_BACKEND", "sidekiq")])
def test_a_mistake_in_the_settings_is_a_usage_mistake_too(cli_env, variable, value):
    result = run({**cli_env, variable: value}, "up")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and variable in result.stderr, result
    assert course_processes(cli_env["EBOOKSTORE_HOME"]) == []


def test_a_failure_is_exit_1_on_stderr(cli_env):
    port = processes.free_port()
    result = run(cli_env, "killport", str(port))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"ebookstore killport: nothing listens on port {port}\n"


@pytest.mark.timeout(150)
def test_up_brings_back_every_process_killed_with_sigkill(cli_env):
    """kill -9 of each process of `up` in turn (a worker and Redis mid-purchase): each is back within 5 s,
    nothing started by hand; every email arrives exactly once; `down` leaves nothing."""
    env = {**cli_env, "EBOOKSTORE_MAIL_DELAY": "0.5"}  # 1.5 s per purchase: time to kill mid-job
    up = run(env, "up", timeout=90)
    assert up.returncode == 0, up.stdout + up.stderr
    home = Path(env["EBOOKSTORE_HOME"])
    web = f"http://127.0.0.1:{env['EBOOKSTORE_WEB_PORT']}"
    from redis import Redis
    redis = Redis(port=int(env["EBOOKSTORE_REDIS_PORT"]), password=(home / "redis-password").read_text().strip(),
                  socket_timeout=1, socket_connect_timeout=1)

    def answers(check):
        try:
            return check()
        except Exception:
            return False
    ready = {"redis": lambda: answers(redis.ping), "mail": lambda: processes.port_open(int(env["EBOOKSTORE_SMTP_PORT"])),
             "web": lambda: processes.port_open(int(env["EBOOKSTORE_WEB_PORT"]))}

    def main_process(name):  # the process supervisord runs as `name` (not a worker's horse or scheduler)
        found = [p for p in course_processes(home)
                 if processes.environ(p).get(processes.PROCESS_NAME) == name and processes.role(p) in ("", "worker")]
        return found[0] if len(found) == 1 else None

    def busy_horse():
        return next((p for p in course_processes(home) if processes.role(p) == "work-horse"), None)

    purchases, back_after, answers_after = [], {}, {}
    for name in ("worker", "redis", "mail", "cron", "relay", "web"):
        if name in ("worker", "redis"):  # mid-purchase: while a work-horse sends its emails
            code, body = http("POST", f"{web}/api/purchases", {"buyer_id": 1, "ebook_id": 1 + len(purchases)})
            assert code == 201
            purchases.append(json.loads(body)["id"])
            horse = wait_until(busy_horse, 10, what="a worker running the purchase's job")
        if name == "worker":
            worker = horse.parent()
            name = processes.environ(worker)[processes.PROCESS_NAME]
            victims = [worker, horse]  # a crash of the whole worker: its job must be done by another
        else:
            victims = [main_process(name)]
        for victim in victims:
            victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: (main_process(name) or victims[0]).pid != victims[0].pid, 5, what=f"{name} to be back")
        back_after[name] = round(time.monotonic() - killed_at, 2)
        # Answering takes its imports on top (the web app's Flask and dashboard: 1 s idle, more on a busy machine).
        wait_until(ready.get(name, lambda: True), 15, what=f"{name} to answer")
        answers_after[name] = round(time.monotonic() - killed_at, 2)
    print(f"\nkill -9: running again after (s) {back_after}; answering after {answers_after}")

    code, body = http("POST", f"{web}/api/purchases", {"buyer_id": 2, "ebook_id": 1})
    assert code == 201
    purchases.append(json.loads(body)["id"])
    keys = {f"purchase-{p}-{kind}" for p in purchases for kind in ("receipt", "commission", "statistics")}

    def emails():
        return [m["key"] for m in json.loads(run(env, "outbox", "--json").stdout) if m["key"].startswith("purchase-")]
    # The killed worker's job waits for the rescue of abandoned jobs (test_reliability times it, alone): allow a
    # busy machine for it. Waited for in the Maildir itself (an `ebookstore outbox` every half second would cost
    # a Python start each time), then counted once through the command.
    maildir = Settings.from_env(env)
    wait_until(lambda: {m["key"] for m in mail.outbox(maildir)} >= keys, 60, interval=0.2,
               what="every purchase's emails")
    time.sleep(2)  # a duplicate would arrive now
    assert sorted(emails()) == sorted(keys), "each email exactly once"

    down = run(env, "down", timeout=90)
    assert down.returncode == 0, down.stderr
    assert course_processes(home) == []


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
