"""Checks of exercise 02: starting redis-server and an RQ worker from Python.

The timeouts are tested for real: `ping` against a server that accepts the
connection and never answers, `start_redis` with a redis-server that is slow to
start (it must be waited for) and with one that never answers (it must be given
up on, and stopped).
"""
import stat
import subprocess
import sys
import time
from urllib.parse import urlsplit

import psutil

from ebookstore import queues
from ebookstore.course import specimens
from ebookstore.course.checks.common import Fail, await_burst_worker, call_with_time_limit, job_outcome, short
from ebookstore.runtime import processes, redis_server
from ebookstore.workers import rq_executable

SLOW_START = 0.3  # seconds the slow redis-server takes before it starts listening
NEVER_ANSWERS = "import time\ntime.sleep(60)\n"  # a "redis-server" that hangs at start-up


def _stop(process):
    if isinstance(process, subprocess.Popen):
        processes.stop([psutil.Process(process.pid)], timeout=2) if process.poll() is None else None
        process.wait(timeout=5)


def _config(client, key: str) -> str:
    value = client.config_get(key)
    value = value.get(key, value.get(key.encode()))
    return value.decode() if isinstance(value, bytes) else str(value)


def _script(ctx, name: str, text: str):
    """An executable file in the check's folder (a stand-in path for the redis-server binary)."""
    path = ctx.settings.home / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def ping_answers_without_hanging(ctx):
    """ping is False where no Redis listens, True where one does"""
    ping = ctx.learner("ping")
    nobody = f"redis://127.0.0.1:{processes.free_port()}/0"
    finished, answer, error = call_with_time_limit(ping, nobody, seconds=2)
    if error is not None or (finished and answer is not False):
        raise Fail("ping must return False (not raise) when nothing listens: catch the connection error")
    port = processes.free_port()
    specimens.listener(ctx.stack, port, "silent-peer")  # accepts the connection, never answers
    finished, answer, error = call_with_time_limit(ping, f"redis://127.0.0.1:{port}/0", seconds=2)
    if not finished:
        raise Fail("ping still waited 2 s on a server that accepted the connection and never answered: give "
                   "the client a socket timeout (socket_timeout=…), so that ping gives up and returns False")
    if error is not None or answer is not False:
        raise Fail(f"a server that never answers PING is no Redis: ping must return False; it "
                   f"{'raised ' + type(error).__name__ if error is not None else 'returned ' + repr(answer)}")
    ctx.redis  # starts the check's own Redis
    if ping(ctx.settings.redis_url) is not True:
        raise Fail("ping must return True when a Redis answers PING")


def starts_redis_safely(ctx):
    """start_redis: 127.0.0.1 only, the given port and folder, append-only"""
    start_redis = ctx.learner("start_redis")
    port, data_dir = processes.free_port(), ctx.settings.home / "learner-redis"
    server, _ = redis_server.find()
    # The real redis-server, slow to start as on a busy machine: start_redis must wait for PING. The script
    # notes its PID (exec keeps it): redis-server overwrites its environment, so the run tag cannot find it,
    # and an answer that overruns the time limit hands back its process to nobody.
    pid_file = ctx.settings.home / "slow-redis-server.pid"
    slow = _script(ctx, "slow-redis-server",
                   f'#!/bin/sh\necho $$ > "{pid_file}"\nsleep {SLOW_START}\nexec "{server}" "$@"\n')
    try:
        _starts_redis_safely(start_redis, slow, port, data_dir, ctx)
    finally:
        _stop_started(pid_file, port)


def _starts_redis_safely(start_redis, slow, port, data_dir, ctx):
    finished, process, error = call_with_time_limit(start_redis, str(slow), port, data_dir, 5.0, seconds=2.5)
    if not finished:
        raise Fail(f"a redis-server that answers after {SLOW_START} s kept start_redis (timeout=5) waiting over 2.5 s: "
                   "ask it for PING every few hundredths of a second and return as soon as it answers")
    if error is not None:
        if not data_dir.is_dir():
            raise Fail(f"data_dir ({data_dir.name}) did not exist, and redis-server cannot keep its files in a folder "
                       "that is not there: create it first (data_dir.mkdir(parents=True, exist_ok=True))")
        raise error
    try:
        if not isinstance(process, subprocess.Popen):
            raise Fail("return the subprocess.Popen of the redis-server you started")
        pid = processes.listener_pid(port)
        if pid != process.pid:
            raise Fail(f"nothing you started listens on port {port} once start_redis returns: a server takes a "
                       "moment to start, so wait until it answers PING before you return")
        addresses = {c.laddr.ip for c in psutil.Process(pid).net_connections("tcp") if c.status == "LISTEN"}
        if addresses != {"127.0.0.1"}:
            raise Fail(f"redis-server listens on {sorted(addresses)}: bind it to 127.0.0.1 only (--bind)")
        client = queues.connect(ctx.settings.replace(external_redis_url=f"redis://127.0.0.1:{port}/0"))
        if _config(client, "appendonly") != "yes":
            raise Fail("turn on append-only persistence (--appendonly yes): queued jobs then survive a crash")
        if _config(client, "dir") != str(data_dir.resolve()):
            raise Fail(f"keep Redis's files in data_dir ({data_dir}): --dir")
    finally:
        _stop(process)


def _stop_started(pid_file, port: int) -> None:
    """Stop the redis-server the slow script became, if it still runs (a late or lost answer left it)."""
    try:
        server = psutil.Process(int(pid_file.read_text()))
        if str(port) in " ".join(server.cmdline()):  # still ours: a PID is reused only after it is gone
            processes.stop([server], timeout=2)
    except (OSError, ValueError, psutil.Error):
        pass


def start_redis_gives_up_in_time(ctx):
    """start_redis gives up after its timeout, stops the server and raises TimeoutError"""
    start_redis = ctx.learner("start_redis")
    hung = _script(ctx, "hung-redis-server", f"#!{sys.executable}\n{NEVER_ANSWERS}")
    port, data_dir = processes.free_port(), ctx.settings.home / "hung-redis"
    finished, process, error = call_with_time_limit(start_redis, str(hung), port, data_dir, 0.5, seconds=2)
    left = [p for p in ctx.stack.processes() if str(hung) in " ".join(_cmdline(p))]
    if not finished:
        raise Fail("with timeout=0.5, start_redis still waited 2 s for a server that never answers: "
                   "the timeout never fires. Compare time.monotonic() with a deadline set before the loop")
    if error is None:
        _stop(process)
        raise Fail("the server never answered PING, yet start_redis returned: raise TimeoutError once the "
                   "timeout has passed")
    if not isinstance(error, TimeoutError):
        raise Fail(f"start_redis raised {type(error).__name__} ({short(error, 80)}); when the server does not "
                   "answer in time, raise TimeoutError")
    if left:
        raise Fail(f"start_redis gave up but left the server running (PID {left[0].pid}): stop the process "
                   "you started (process.kill()) before you raise TimeoutError")


def _cmdline(proc) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def worker_command_runs_a_job(ctx):
    """worker_command starts a worker that runs JSON jobs from its queues in order and exits"""
    worker_command = ctx.learner("worker_command")
    order = ["default", "low", "critical"]  # neither sorted nor reversed: only the given order passes
    jobs = {name: queues.get_queue(name, ctx.redis).enqueue("ebookstore.reports.period_bounds", "weekly")
            for name in reversed(order)}  # the last queue's job is the oldest
    argv = worker_command(rq_executable(), list(order), f"{ctx.stack.tag}.ex02")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise Fail("return the command as a list of strings, e.g. [rq, 'worker', …]")
    password = urlsplit(ctx.settings.redis_url).password or "\0"
    if any("redis://" in a or password in a for a in argv):
        raise Fail("the command line holds the Redis URL and its password, which `ps` shows to every user: leave "
                   "it out, `rq worker` reads the URL from RQ_REDIS_URL in its environment")
    started = time.monotonic()
    process = ctx.stack.start("learner-worker", argv)  # with RQ_REDIS_URL in its environment
    ended = await_burst_worker(ctx, process)
    took = time.monotonic() - started
    log = ctx.stack.log("learner-worker", 200)
    if "DeserializationError" in log or "UnpicklingError" in log or "pickle" in log.lower():
        raise Fail("the worker could not read the job: the store's queues use the JSON serializer (--serializer)")
    for job in jobs.values():
        job.refresh()
        if job.get_status() != "finished" and ended == "late":
            raise Fail(f"{took:.0f} s after it started, the worker still ran and {job_outcome(job, log)} (queue "
                       f"{job.origin}): check the options of your command (`rq worker --burst …` runs the jobs of its "
                       "queues, then exits)")
        if job.get_status() != "finished":
            raise Fail(f"{job_outcome(job, log)} (queue {job.origin}): give the worker every queue, and check "
                       "the options of your command")
    if ended == "waiting":
        raise Fail("the worker ran its jobs, then went on waiting for more: a worker for this job should exit when "
                   "its queues are empty (--burst)")
    if ended == "late":
        raise Fail(f"the worker ran its jobs but still ran {took:.0f} s after it started: a worker for this job "
                   "should exit when its queues are empty (--burst)")
    if f"{ctx.stack.tag}.ex02" not in log:
        raise Fail("name the worker (--name): the name is how you find it in ps and on the dashboard")
    ran = sorted(order, key=lambda name: jobs[name].started_at)
    if ran != order:
        raise Fail(f"given the queues {order}, the worker ran their jobs in the order {ran}: a worker reads its "
                   "queues in the order of its command line, so keep the order you were given")


CHECKS = [ping_answers_without_hanging, starts_redis_safely, start_redis_gives_up_in_time, worker_command_runs_a_job]
