"""What the notebooks share: the environment cell, the environment report, job-state snapshots.

    from ebookstore.course.notebook import start_notebook, check
    nb = start_notebook("03")     # a Stack for this notebook, tagged nb03-…
    ...
    nb.stop()                     # the clean-up cell (it also happens when the kernel exits)
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from ebookstore import queues
from ebookstore.config import Settings
from ebookstore.course import demo_jobs
from ebookstore.course.grading import check
from ebookstore.runtime import processes, redis_server
from ebookstore.runtime.stack import Stack, new_tag

__all__ = ["check", "environment_report", "heartbeat_expiry", "job_states", "start_notebook"]

PACKAGES = ["rq", "redis", "rq-dashboard", "Flask", "psutil", "honcho", "aiosmtpd", "jupyterlab", "nbmake"]


def start_notebook(number: str, quiet: bool = False) -> Stack:
    """The environment cell of notebook `number`: a Stack whose processes carry the tag nbNN-…"""
    # The kernel may not have the virtual environment on PATH: shell cells (!ebookstore, !rq)
    # must find the same commands this Python has.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    stack = Stack(Settings.from_env(), tag=new_tag(f"nb{number}"), preload=(demo_jobs.__name__,))
    if not quiet:
        s = stack.settings
        mode = "solutions (grading solutions/)" if s.solutions else "learner (grading exercises/)"
        print(f"run tag     {stack.tag}   (every process this notebook starts carries it)")
        print(f"state       {s.home}")
        print(f"redis       {s.redis_url_shown}")
        print(f"mode        {mode}")
    return stack


def environment_report() -> bool:
    """Print what this machine has for the course, and what to fix; True if all is well."""
    ok = True
    print(f"Python      {platform.python_version()} ({sys.executable})")
    if sys.version_info < (3, 11):
        ok = False
        print("  ✗ the course needs Python 3.11 or newer")
    for name in PACKAGES:
        try:
            label = "redis-py" if name == "redis" else name  # the client library, not the server
            print(f"{label:<11} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            ok = False
            print(f"{name:<11} ✗ missing: run `make lab` (it installs everything into .venv)")
    try:
        server, kind = redis_server.find()
        print(f"redis       {redis_server.version(server)}  {kind}: {server}")
    except FileNotFoundError as error:
        ok = False
        print(f"redis       ✗ {error}")
    settings = Settings.from_env()
    for label, port in (("redis port", settings.redis_port), ("web port", settings.web_port),
                        ("smtp port", settings.smtp_port)):
        holder = processes.listener_pid(port)
        if holder is None:
            print(f"{label:<11} {port} free")
        else:
            name = processes.psutil.Process(holder).name()
            mine = processes.environ(processes.psutil.Process(holder)).get(processes.RUN_TAG)
            note = "the course's own (ebookstore up?)" if mine else "✗ taken: stop it or set another port"
            ok = ok and bool(mine)
            print(f"{label:<11} {port} used by PID {holder} ({name}): {note}")
    print("All set." if ok else "Fix the ✗ lines above, then run this cell again.")
    return ok


def job_states(connection, queue_name: str) -> dict[str, list[str]]:
    """The job ids of a queue and of each of its registries: where every job is right now."""
    queue = queues.get_queue(queue_name, connection)
    return {
        "queued": queue.get_job_ids(),
        "scheduled": ScheduledJobRegistry(queue=queue).get_job_ids(),
        "started": StartedJobRegistry(queue=queue).get_job_ids(),
        "finished": FinishedJobRegistry(queue=queue).get_job_ids(),
        "failed": FailedJobRegistry(queue=queue).get_job_ids(),
    }


def heartbeat_expiry(connection, queue_name: str, job_id: str) -> float | None:
    """When (Unix time) a started job's heartbeat runs out: after that, maintenance treats it as abandoned."""
    registry = StartedJobRegistry(queue=queues.get_queue(queue_name, connection))
    for member, score in connection.zrange(registry.key, 0, -1, withscores=True):
        if member.decode().split(":")[0] == job_id:
            return score
    return None
