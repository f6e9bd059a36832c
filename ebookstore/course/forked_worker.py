"""A check's RQ worker, forked from the check's own process instead of started afresh.

    log = forked_worker.run(ctx.stack, "worker", ["default"], simple=True)   # a burst run: common.run_worker
    worker = forked_worker.start(ctx.stack, "worker", ["low"], with_scheduler=True, wait_ready=True)

A fresh `rq worker` spends about 0.4 s of CPU importing rq, redis-py and the store before it looks at a
queue: most of what a check that runs the learner's jobs costs, and a class's grading is bound by the CPU.
The check's process has all of that loaded, so it forks, and the child runs RQ's own command line
(`rq.cli.main`) with the very arguments, environment, working folder and log that `Stack.worker` would give
an `rq worker` process: the trick RQ's worker uses for each job's work-horse, and the proctor's fork server
for each check. The child is a process of its own: what a job does to its memory, or an `os._exit`, stays
there. It imports the learner's module afresh, from the file, as a worker started afresh does: the module
the check's process loaded, and whatever the check did to it, are dropped in the child first.

It stays in the check's session, so a check that runs out of time has it stopped with the rest (the proctor
stops a check's session), and it is the check's child, so the check's end stops it if it still runs.
A process with other threads (the learner's call still waiting in one, or pytest's) is not forked — a lock
another thread held would stay locked in the child — and starts an `rq worker` as `Stack.worker` does.
"""
from __future__ import annotations

import importlib
import io
import os
import signal
import sys
import threading
import traceback

import psutil
import rq.cli  # noqa: F401 - loaded here, so that a forked worker need not import it (nor what follows)

from ebookstore import queues, retries, workers  # noqa: F401 - the worker class and the exception handler, likewise
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until
from ebookstore.runtime.stack import START_TIMEOUT, Stack, StartError

LEARNER_PACKAGES = ("exercises", "solutions")  # where the learner's code comes from (grading.exercise_module)


def run(stack: Stack, name: str, queue_names: list[str] | None = None, timeout: float = 10.0, **options) -> str:
    """Run a burst worker `name` of `stack` on `queue_names` until they are empty; the lines it logged.

    Raises psutil.TimeoutExpired if it still runs after `timeout` s (it is stopped first). Other options go
    to workers.worker_argv (`simple=True`: RQ's SimpleWorker, which runs each job in the worker itself).
    """
    worker, log_start = _start(stack, name, queue_names, burst=True, **options)
    try:
        worker.wait(timeout)
    except psutil.TimeoutExpired:
        processes.stop([worker], timeout=1)
        raise
    if log_start is None:
        return stack.log(name, 1000)
    with open(stack.log_path(name), "rb") as log:
        log.seek(log_start)
        return log.read().decode(errors="replace")


def start(stack: Stack, name: str, queue_names: list[str] | None = None, *, wait_ready: bool = False,
          **options) -> psutil.Process:
    """Start worker `name` of `stack` on `queue_names` and give it back (stop it with processes.stop).

    `wait_ready`: once it has registered in Redis (StartError if it exits first, TimeoutError if it takes
    START_TIMEOUT s). Options as for `run`, `burst` among them.
    """
    worker, _ = _start(stack, name, queue_names, **options)
    if wait_ready:
        key = f"rq:worker:{stack.tag}.{name}"
        connection = queues.connect(stack.settings)
        try:
            wait_until(lambda: processes.gone(worker) or connection.exists(key), START_TIMEOUT,
                       what=f"{name} to start")
        except TimeoutError:
            processes.stop([worker], timeout=1)
            raise
        if processes.gone(worker):
            raise StartError(f"{name} exited before it registered:\n{stack.log(name)}")
    return worker


def _start(stack: Stack, name: str, queue_names: list[str] | None, **options) -> tuple[psutil.Process, int | None]:
    """The worker, and where its lines begin in its log (None: started afresh, stack.log knows)."""
    if threading.active_count() > 1:  # see above: started afresh
        return stack.worker(name, queue_names, **options), None
    argv = workers.worker_argv(stack.settings, f"{stack.tag}.{name}", queue_names, **options)
    env = stack.env(name)
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    with open(stack.log_path(name), "ab") as log:
        log_start = log.tell()
        sys.stdout.flush()  # what this process printed is written once, by it, not again by the child
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _become_worker(argv, env, str(stack.cwd), log.fileno())  # never returns
    return psutil.Process(pid), log_start


def _become_worker(argv: list[str], env: dict, cwd: str, log_fd: int) -> None:
    """In the forked child: become `argv` (an `rq worker …` command line) as exec would make it, then exit."""
    status = 1
    try:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        # Line by line, as PYTHONUNBUFFERED gives a worker started afresh.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
        os.umask(0o077)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        for number in (signal.SIGTERM, signal.SIGCHLD, signal.SIGALRM, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.alarm(0)
        for module in [m for m in sys.modules if m.split(".")[0] in LEARNER_PACKAGES]:
            del sys.modules[module]
        sys.path.insert(0, cwd)  # as PYTHONPATH puts it for a worker started afresh
        importlib.invalidate_caches()
        sys.argv = list(argv)
        rq.cli.main(args=argv[1:], prog_name="rq")
        status = 0
    except SystemExit as end:
        status = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    except BaseException:  # noqa: BLE001 - told in the log, as a worker's crash would be
        traceback.print_exc()
    finally:
        os._exit(status)
