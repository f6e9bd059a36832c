"""What the notebooks share: the environment cell, the clean-up cell, job-state snapshots.

    from ebookstore.course.notebook import start_notebook, check, clean_up
    nb = start_notebook("03")     # a Stack for this notebook, tagged nb03-…
    ...
    clean_up(nb)                  # the clean-up cell (stopping also happens when the kernel exits)

Each notebook runs in a state folder of its own (var/notebooks/NN; NN-2 … while another kernel runs the
same notebook) with its own Redis, and takes
the course's default ports only where they are free: so notebooks open side by side, or beside
`ebookstore up`, never share a process another one may stop. While a notebook runs, the kernel's
environment carries its settings (shell cells such as `!ebookstore status` see them); the
clean-up cell puts back the variables it replaced.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sys
from pathlib import Path

from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from ebookstore import queues
from ebookstore.config import Settings
from ebookstore.course import demo_jobs, forkserver, proctor
from ebookstore.runtime import processes, redis_server
from ebookstore.runtime.stack import Stack, new_tag, stop_redis_last

__all__ = ["check", "clean_up", "environment_report", "heartbeat_expiry", "job_states", "kernel_environment",
           "start_notebook"]

PACKAGES = ["rq", "redis", "rq-dashboard", "Flask", "psutil", "honcho", "aiosmtpd", "jupyterlab", "nbmake"]

_RUNS: dict[str, tuple[Stack, dict]] = {}  # notebook number -> its run in this kernel, and the variables it replaced


def start_notebook(number: str, quiet: bool = False) -> Stack:
    """The environment cell of notebook `number`: a Stack whose processes carry the tag nbNN-…"""
    notes = []
    if number in _RUNS:  # Run All again without the clean-up cell: end the earlier run first
        previous = _RUNS[number][0]
        notes.append(f"this kernel's earlier run {previous.tag} was still up: {_stop(previous)}")
    base = Settings.from_env()  # the kernel's own settings (a cell may have changed a port, say)
    home, cleaned, mine = _state_folder(base.home / "notebooks", number)
    if cleaned:  # a kernel that was killed (or crashed) could not clean up: it is done now
        notes.append(f"an earlier run of this notebook lost its kernel and left processes behind: {cleaned}")
    if mine:  # cells run after the clean-up cell started them
        notes.append(f"this kernel's processes still in {home.name} (started after its clean-up cell): {mine}")
    # The notebooks teach RQ: a learner's EBOOKSTORE_QUEUE_BACKEND (set to try `ebookstore up` on Celery) does not
    # change them; notebook 13 names each backend it runs.
    settings = base.replace(home=home, redis_port=_port(base.redis_port), web_port=_port(base.web_port),
                            smtp_port=_port(base.smtp_port), external_redis_url=base.external_redis_url,
                            queue_backend="rq")
    stack = Stack(settings, tag=new_tag(f"nb{number}"), preload=(demo_jobs.__name__,), say=print)
    # Shell cells (!ebookstore, !rq) must find the commands of this Python and this notebook's settings.
    changes = {**settings.to_env(), "REDISCLI_AUTH": settings.redis_password}  # redis-cli reads its password here
    bin_dir, path = str(Path(sys.executable).parent), os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        changes["PATH"] = bin_dir + os.pathsep + path
    _RUNS[number] = (stack, {key: os.environ.get(key) for key in changes})
    os.environ.update(changes)
    forkserver.start(dict(os.environ))  # the grader, loaded in the background for the check cell
    up = [p for p in _course_processes(base.home) if processes.environ(p).get(processes.RUN_TAG, "").startswith("up-")]
    if up:
        notes.append(f"`ebookstore up` is running for {base.home} (redis {base.redis_port}, web {base.web_port}): "
                     "this notebook runs its own processes beside it, on the ports below, and never stops the store's")
    if not quiet:
        s = stack.settings
        mode = "solutions (grading solutions/)" if s.solutions else "learner (grading exercises/)"
        for note in notes:
            print(f"note        {note}")
        print(f"run tag     {stack.tag}   (every process this notebook starts carries it)")
        print(f"state       {s.home}")
        print(f"ports       redis {s.redis_port}, web {s.web_port}, smtp {s.smtp_port}")
        print(f"redis       {s.redis_url_shown}   (the password is in {s.home}/redis-password)")
        print(f"mode        {mode}")
        print(f"terminal    export EBOOKSTORE_HOME={s.home} EBOOKSTORE_REDIS_PORT={s.redis_port} "
              f"EBOOKSTORE_WEB_PORT={s.web_port} EBOOKSTORE_SMTP_PORT={s.smtp_port}")
        print("            (paste it into a terminal: `ebookstore` commands there then work on this notebook's store;")
        print(f"            redis-cli also wants: export REDISCLI_AUTH=$(cat {s.home}/redis-password))")
    return stack


CLAIM = "kernel"  # in a notebook's state folder: "PID:start time" of the kernel whose run uses it


def _state_folder(notebooks: Path, number: str) -> tuple[Path, str, str]:
    """var/notebooks/NN — or NN-2, NN-3 … while another live kernel runs the same notebook in it.

    A folder is another kernel's while that kernel's claim (the file CLAIM) or a process it started is
    alive; the first free one is claimed for this kernel. Processes left there by a kernel that is gone are
    stopped (the second value says which), and so are this kernel's own (the third): cells run after the
    clean-up cell started them, under a run that is over.
    """
    me = processes.owner_id()
    for n in range(1, 100):
        home = notebooks / (number if n == 1 else f"{number}-{n}")
        found = _course_processes(home)
        cleaned = _stop_with_note([p for p in found if not processes.owner_alive(p)])
        mine = _stop_with_note([p for p in found if processes.environ(p).get(processes.OWNER) == me])
        others = [p for p in found if not processes.gone(p)]  # what the two stops above left
        claim = home / CLAIM
        claimant = claim.read_text().strip() if claim.exists() else ""
        if others or (claimant and claimant != me and processes.owner_running(claimant)):
            continue
        home.mkdir(parents=True, exist_ok=True)
        claim.write_text(me)
        return home, cleaned, mine
    raise RuntimeError(f"99 runs of notebook {number} are running at once in {notebooks}")


def _stop_with_note(procs) -> str:
    return str(stop_redis_last(procs, timeout=3)) if procs else ""


def clean_up(stack: Stack) -> None:
    """The clean-up cell: stop every process of the run (workers before Redis) and show that none is left.

    The run is over: a cell that would start a process for it after this says to run the environment cell.
    """
    outcome = _stop(stack)
    stack.closed = (f"this notebook's run {stack.tag} was cleaned up: run the environment cell (the first code "
                    "cell) again to start afresh")
    print(outcome if outcome else f"nothing was running for {stack.tag}")
    left = processes.tagged(stack.tag)
    if left:
        print(f"still running with run tag {stack.tag}:\n{processes.format_rows(processes.ps_rows(left))}")
    else:
        print(f"nothing left running with run tag {stack.tag} (looked at every process's environment)")


def check(*exercises: str, solutions: bool | None = None) -> None:
    """Grade exercises: one ✓/✗ line per check, with hints, each check within a time limit (see proctor.check)."""
    proctor.check(*exercises, solutions=solutions)


@contextlib.contextmanager
def kernel_environment(settings: Settings):
    """Within the block, code run in this kernel reads `settings` from the environment (as a worker would)."""
    saved = dict(os.environ)
    os.environ.update(settings.to_env())
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _stop(stack: Stack):
    """Stop the run and put back the environment variables it replaced (only those)."""
    outcome = stack.stop(timeout=5)
    for port in (stack.settings.redis_port, stack.settings.web_port, stack.settings.smtp_port):
        processes.release_port(port)
    claim = stack.settings.home / CLAIM
    if claim.exists() and claim.read_text().strip() == processes.owner_id():
        claim.unlink()  # the folder is free for another kernel
    for number, (run, saved) in list(_RUNS.items()):
        if run is stack:
            del _RUNS[number]
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return outcome


def _course_processes(home: Path):
    """The course's processes of state folder `home`, but the grader's fork server (it belongs to no run)."""
    return [p for p in processes.psutil.process_iter()
            if processes.environ(p).get(processes.RUN_TAG) and processes.environ(p).get("EBOOKSTORE_HOME") == str(home)
            and processes.environ(p).get(processes.PROCESS_NAME) != forkserver.NAME]


def _port(default: int) -> int:
    """The course's default port if nothing listens there and no other run has claimed it, else a free one.

    The port is claimed for this kernel (until the clean-up cell): two notebooks started in the same
    moment never choose the same one.
    """
    # Whether anything listens, not who: the listener's PID means a look through every process's sockets
    # (a tenth of a second beside `ebookstore up` and a test run's hundreds of processes).
    free = processes.listener_uid(default) is None and not processes.port_open(default)
    return default if free and processes.claim_port(default) else processes.free_port()


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
            note = ("the course's own (`ebookstore up`, or another notebook)" if mine else
                    "another program's: notebooks take a free port instead; `ebookstore up` needs this one "
                    "(or another one set in the environment, see the README)")
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
