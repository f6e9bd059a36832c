"""Checks of exercise 02: starting redis-server and an RQ worker from Python."""
import subprocess

import psutil

from ebookstore import queues
from ebookstore.course.checks.common import Fail
from ebookstore.runtime import processes, redis_server
from ebookstore.workers import rq_executable


def _stop(process):
    if isinstance(process, subprocess.Popen):
        processes.stop([psutil.Process(process.pid)], timeout=2) if process.poll() is None else None
        process.wait(timeout=5)


def _config(client, key: str) -> str:
    value = client.config_get(key)
    value = value.get(key, value.get(key.encode()))
    return value.decode() if isinstance(value, bytes) else str(value)


def ping_answers_without_hanging(ctx):
    """ping is False where no Redis listens, True where one does"""
    ping = ctx.learner("ping")
    nobody = f"redis://127.0.0.1:{processes.free_port()}/0"
    if ping(nobody) is not False:
        raise Fail("ping must return False (not raise) when nothing listens: catch the connection error")
    ctx.redis  # starts the check's own Redis
    if ping(ctx.settings.redis_url) is not True:
        raise Fail("ping must return True when a Redis answers PING")


def starts_redis_safely(ctx):
    """start_redis: 127.0.0.1 only, the given port and folder, append-only"""
    start_redis = ctx.learner("start_redis")
    port, data_dir = processes.free_port(), ctx.settings.home / "learner-redis"
    server, _ = redis_server.find()
    process = start_redis(str(server), port, data_dir)
    try:
        if not isinstance(process, subprocess.Popen):
            raise Fail("return the subprocess.Popen of the redis-server you started")
        pid = processes.listener_pid(port)
        if pid != process.pid:
            raise Fail(f"nothing you started listens on port {port} once start_redis returns: wait for PING")
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


def worker_command_runs_a_job(ctx):
    """worker_command starts a worker that runs a JSON job and exits"""
    worker_command = ctx.learner("worker_command")
    job = queues.get_queue("low", ctx.redis).enqueue("ebookstore.reports.period_bounds", "weekly")
    argv = worker_command(rq_executable(), ctx.settings.redis_url, ["critical", "low"], f"{ctx.stack.tag}.ex02")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise Fail("return the command as a list of strings, e.g. [rq, 'worker', …]")
    process = ctx.stack.start("learner-worker", argv)
    try:
        process.wait(timeout=10)
    except psutil.TimeoutExpired:
        raise Fail("the worker was still running after 10 s: a worker for this job should exit "
                   "when its queues are empty (--burst)") from None
    log = ctx.stack.log("learner-worker")
    if "DeserializationError" in log or "UnpicklingError" in log or "pickle" in log.lower():
        raise Fail("the worker could not read the job: the store's queues use the JSON serializer")
    job.refresh()
    if job.get_status() != "finished":
        raise Fail(f"the job is {job.get_status()} after the worker ran; its log ends:\n{log[-400:]}")
    if f"{ctx.stack.tag}.ex02" not in log:
        raise Fail("name the worker (--name): the name is how you find it in ps and on the dashboard")


CHECKS = [ping_answers_without_hanging, starts_redis_safely, worker_command_runs_a_job]
