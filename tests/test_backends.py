"""The queue adapter (EBOOKSTORE_QUEUE_BACKEND): the store's jobs on RQ, Celery, Dramatiq and inline.

Each backend as a learner runs it: `ebookstore up` with the setting, purchases over HTTP, every
email exactly once (also when a job is delivered a second time: every queue delivers at least
once), cron's daily job run by that backend's workers, and `down` leaves no process behind.
"""
import collections
import json
import os
import signal
from contextlib import closing
from pathlib import Path

import psutil
import pytest

from ebookstore import backends, jobs, mail, outbox, store
from ebookstore.config import Settings
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until
from tests.test_cli import cli_env, http, run  # noqa: F401  cli_env: the fixture

# What `ebookstore status` shows of each backend's worker program with EBOOKSTORE_WORKERS=2.
WORKER_ROLES = {
    "rq": {"rq worker": 2},
    "celery": {"celery worker": 1, "celery pool process": 2},
    "dramatiq": {"dramatiq main": 1, "dramatiq worker process": 2},
}
PURCHASES = [(1, 1), (1, 2), (2, 4)]  # (buyer, ebook): three purchases, three emails each


def course_processes(home):
    return [p for p in psutil.process_iter() if processes.environ(p).get("EBOOKSTORE_HOME") == str(home)]


def email_keys(env) -> collections.Counter:
    """{key: how many emails} in the Maildir the mail catcher files into (what `ebookstore outbox` lists)."""
    return collections.Counter(m["key"] for m in mail.outbox(Settings.from_env(env)))


def buy_over_http(env) -> list[int]:
    web = f"http://127.0.0.1:{env['EBOOKSTORE_WEB_PORT']}"
    ids = []
    for buyer, ebook in PURCHASES:
        code, body = http("POST", f"{web}/api/purchases", {"buyer_id": buyer, "ebook_id": ebook})
        assert code == 201, (code, body)
        ids.append(json.loads(body)["id"])
    return ids


def purchase_keys(ids) -> set[str]:
    return {f"purchase-{i}-{kind}" for i in ids for kind in ("receipt", "commission", "statistics")}


@pytest.mark.timeout(150)
@pytest.mark.parametrize("backend", ["rq", "celery", "dramatiq"])
def test_up_runs_the_store_jobs_on_the_backends_own_workers_each_email_once(cli_env, backend):  # noqa: F811
    env = {**cli_env, "EBOOKSTORE_QUEUE_BACKEND": backend, "EBOOKSTORE_WORKERS": "2",
           "EBOOKSTORE_DAILY_INTERVAL": "3"}  # cron's daily job every 3 s: we see it run
    up = run(env, "up", timeout=90)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"queue      {backend} " in up.stdout

    assert worker_roles(run(env, "status").stdout) == WORKER_ROLES[backend]
    others = {"rq", "celery", "dramatiq"} - {backend}
    commands = [" ".join(p.cmdline()) for p in course_processes(env["EBOOKSTORE_HOME"])]
    assert not [c for c in commands for other in others if f"bin/{other} " in c], commands  # its workers only

    ids = buy_over_http(env)
    # Every queue delivers at least once: each purchase's job a second time, at once, as a redelivery
    # would (the two copies may run side by side on the two worker processes).
    backends.get(Settings.from_env(env)).enqueue(
        [backends.Call("ebookstore.jobs.purchase_notification", (i,)) for i in ids])

    def all_sent():
        keys = email_keys(env)
        return purchase_keys(ids) <= set(keys) and any(k.startswith("report-daily-") for k in keys)
    wait_until(all_sent, 30, interval=0.3, what=f"every purchase's emails and a daily report ({backend})")
    # SMTP to the catcher files every email it gets: a duplicate would be a second file with the same key.
    # Wait until no email has come for a while, so that a late duplicate cannot slip past.
    def purchase_emails():
        return {k: n for k, n in email_keys(env).items() if k in purchase_keys(ids)}
    settled = [purchase_emails()]
    wait_until(lambda: settled.append(purchase_emails()) or settled[-1] == settled[-2], 15, interval=1.5,
               what="the purchases' emails to settle")
    assert settled[-1] == dict.fromkeys(purchase_keys(ids), 1), settled[-1]

    if backend != "rq":  # RQ's kill -9 cases: tests/test_cli.py, test_reliability.py
        _main_killed_and_replaced(env)
        web = f"http://127.0.0.1:{env['EBOOKSTORE_WEB_PORT']}"
        code, body = http("POST", f"{web}/api/purchases", {"buyer_id": 2, "ebook_id": 1})
        assert code == 201, body
        again = purchase_keys([json.loads(body)["id"]])
        wait_until(lambda: again <= set(email_keys(env)), 30, interval=0.3, what="emails after the restart")

    down = run(env, "down", timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert course_processes(env["EBOOKSTORE_HOME"]) == []


def _main_killed_and_replaced(env):
    """kill -9 of the worker program's main process: supervisord starts a new one, and no process of the old
    one is left taking jobs unsupervised (Celery's pool exits by itself; Dramatiq's is told to finish and exit)."""
    def workers():
        found = [p for p in course_processes(env["EBOOKSTORE_HOME"])
                 if processes.environ(p).get(processes.PROCESS_NAME) == "worker-1"]
        return {p.pid: processes.library_role(p) for p in found if not processes.gone(p)}
    old_main, = [pid for pid, role in workers().items() if role in ("celery worker", "dramatiq main")]
    os.kill(old_main, signal.SIGKILL)

    def replaced():
        roles = workers()
        return old_main not in roles and not any("orphaned" in r for r in roles.values()) and \
            sorted(roles.values()) == sorted(r for r, n in WORKER_ROLES[env["EBOOKSTORE_QUEUE_BACKEND"]].items()
                                             for _ in range(n))
    wait_until(replaced, 40, interval=0.3, what=f"a new worker program and no orphan: {workers()}")


def worker_roles(status: str) -> collections.Counter:
    """{role: how many} of the worker processes `ebookstore status` lists (an RQ worker's horse and scheduler aside)."""
    roles = collections.Counter()
    for line in status.splitlines()[1:]:
        what = line[13:13 + 32].strip()  # the PROCESS column: "worker-1 celery pool process"
        if what.startswith("worker-"):
            role = what.partition(" ")[2] or ("rq worker" if "rq worker" in line else "?")
            if role not in ("scheduler", "work-horse"):
                roles[role] += 1
    return roles


@pytest.mark.timeout(90)
def test_up_with_the_inline_backend_runs_without_redis(cli_env):  # noqa: F811
    env = {**cli_env, "EBOOKSTORE_QUEUE_BACKEND": "inline"}
    up = run(env, "up", timeout=60)
    assert up.returncode == 0, up.stdout + up.stderr
    names = {processes.environ(p).get(processes.PROCESS_NAME) for p in course_processes(env["EBOOKSTORE_HOME"])}
    assert names == {"supervisord", "mail", "relay", "web"}, names  # no Redis, no worker, no cron
    assert processes.listener_pid(int(env["EBOOKSTORE_REDIS_PORT"])) is None

    ids = buy_over_http(env)
    keys = email_keys(env)  # no waiting: inline, each purchase sent its emails before it answered
    assert {k: keys[k] for k in purchase_keys(ids)} == dict.fromkeys(purchase_keys(ids), 1), keys
    buy = run(env, "buy", "2", "1")
    assert buy.returncode == 0, buy.stderr
    assert email_keys(env)[f"purchase-{json.loads(buy.stdout)['id']}-receipt"] == 1

    down = run(env, "down")
    assert down.returncode == 0
    assert course_processes(env["EBOOKSTORE_HOME"]) == []


def test_the_inline_backend_runs_the_purchase_flow_in_the_caller_with_no_redis_at_all(tmp_path, monkeypatch):
    # Job functions read their settings from the environment, as a worker's do.
    monkeypatch.setenv("EBOOKSTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EBOOKSTORE_QUEUE_BACKEND", "inline")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{processes.free_port()}/0")  # nothing listens there
    monkeypatch.delenv("EBOOKSTORE_SMTP_URL", raising=False)
    settings = Settings.from_env()
    assert backends.get(settings).name == "inline"
    with closing(store.connect(settings.database_path)) as conn:
        purchase = jobs.buy_and_notify(conn, None, 1, 3)
        pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE completed_at IS NULL").fetchone()[0]
    assert purchase["jobs"] == [jobs.notification_job_id(purchase["id"])]
    assert sorted(m["key"] for m in mail.outbox(settings)) == sorted(purchase_keys([purchase["id"]]))
    assert pending == 0  # the job ran and marked its outbox row complete: nothing left for a relay


@pytest.mark.parametrize("value", ["sidekiq", "rq,celery", "x" * 5000])
def test_an_unknown_backend_is_one_line_naming_the_known_ones_exit_2_nothing_started(cli_env, value):  # noqa: F811
    result = run({**cli_env, "EBOOKSTORE_QUEUE_BACKEND": value}, "up")
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.count("\n") == 1 and len(result.stderr) < 300, result.stderr
    assert "EBOOKSTORE_QUEUE_BACKEND" in result.stderr and "rq, celery, dramatiq, inline" in result.stderr
    assert course_processes(cli_env["EBOOKSTORE_HOME"]) == []


def test_every_backend_is_known_to_the_adapter_and_the_settings():
    assert tuple(backends.BACKENDS) == backends.KNOWN == ("rq", "celery", "dramatiq", "inline")
    assert Settings.from_env({"EBOOKSTORE_HOME": "/nonexistent"}).queue_backend == "rq"  # the default
    assert Settings.from_env({"EBOOKSTORE_HOME": "/x", "EBOOKSTORE_QUEUE_BACKEND": " Celery "}).queue_backend == "celery"
    with pytest.raises(ValueError, match="known backends: rq, celery, dramatiq, inline"):
        Settings.from_env({"EBOOKSTORE_HOME": "/nonexistent", "EBOOKSTORE_QUEUE_BACKEND": "resque"})
    assert Path(backends.__file__).parent.name == "backends"
    assert os.path.basename(backends.worker_argv(Settings.from_env({"EBOOKSTORE_QUEUE_BACKEND": "celery"}),
                                                 2, "w")[0]) == "celery"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", ["celery", "dramatiq"])
def test_purchases_while_redis_is_down_are_sent_by_the_backend_once_it_is_back(stack, backend):
    """The outbox works on every backend: a purchase answers while Redis is down (its job recorded, not
    queued), the relay enqueues it through the adapter once Redis is back, that backend's workers send it."""
    settings = stack.settings.replace(external_redis_url=None, redis_port=processes.free_port(), queue_backend=backend)
    stack.settings = settings
    stack.redis()
    backend_of_the_store = backends.get(settings)
    stack.stop("redis")
    with closing(store.connect(settings.database_path)) as conn:
        purchases = [jobs.buy_and_notify(conn, None, 1, ebook, backend=backend_of_the_store) for ebook in (1, 2)]
        assert [p["jobs"] for p in purchases] == [[], []]  # not queued (and no waiting for Redis)…
        assert [row["job_id"] for row in outbox.pending(conn)] == [jobs.notification_job_id(p["id"]) for p in purchases]
    stack.redis()
    stack.relay()
    stack.start("worker-1", backends.worker_argv(settings, 1, f"{stack.tag}.worker-1"))
    ids = [p["id"] for p in purchases]
    wait_until(lambda: purchase_keys(ids) <= {m["key"] for m in mail.outbox(settings)}, 30,
               what=f"the outbox's emails, sent by {backend}")
    with closing(store.connect(settings.database_path)) as conn:
        assert outbox.pending(conn) == []


def test_workers_with_the_inline_backend_says_there_are_none_to_run(cli_env):  # noqa: F811
    result = run({**cli_env, "EBOOKSTORE_QUEUE_BACKEND": "inline"}, "workers")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no workers" in result.stderr, result
    assert course_processes(cli_env["EBOOKSTORE_HOME"]) == []
