"""A check's RQ worker, forked from the check's own process instead of started afresh.

    log = forked_worker.run(ctx.stack, "worker", ["default"], simple=True)   # a burst run: common.run_worker
    worker = forked_worker.start(ctx.stack, "worker", ["low"], with_scheduler=True, wait_ready=True)

A fresh `rq worker` spends about 0.4 s of CPU importing rq, redis-py and the store before it looks at a
queue: most of what a check that runs the learner's jobs costs, and a class's grading is bound by the CPU.
The check's process has all of that loaded, so it forks, and the child runs RQ's own command line
(`rq.cli.main`) with the very arguments, environment, working folder and log that `Stack.worker` would give
an `rq worker` process: the trick RQ's worker uses for each job's work-horse, and the proctor's fork server
for each check. The child is a process of its own: what a job does to its memory, or an `os._exit`, stays
there. It is made to look like a fresh `rq worker` where a job could tell: the learner's module is dropped
(the worker imports it afresh, from the file, and nothing the check's process did to it), `sys.path` is
what Python and RQ give an `rq` command (not the project folder the grader runs in: a submission cannot
import solutions/), the root logger is unconfigured, signal handlers are Python's, and only stdin, stdout and
stderr stay open. What it shares with the check's process is the other modules as they were loaded
(rq, redis-py, the store): a learner's code that changed one of those in the check's process would be seen.

It stays in the check's session, so a check that runs out of time has it stopped with the rest (the proctor
stops a check's session), and it is the check's child, so the check's end stops it if it still runs.
A process with other threads (the learner's call still waiting in one, or pytest's) is not forked — a lock
another thread held would stay locked in the child — and starts an `rq worker` as `Stack.worker` does.
"""
from __future__ import annotations

import gc
import importlib
import io
import logging
import os
import signal
import sys
import threading
import time
import traceback

import psutil
import rq.cli  # noqa: F401 - loaded here, so that a forked worker need not import it (nor what follows)

from ebookstore import queues, retries, workers  # noqa: F401 - the worker class and the exception handler, likewise
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until
from ebookstore.runtime.stack import START_TIMEOUT, Stack, StartError, worker_ready

LEARNER_PACKAGES = ("exercises", "solutions")  # where the learner's code comes from (grading.exercise_module)


def run(stack: Stack, name: str, queue_names: list[str] | None = None, timeout: float = 10.0, **options) -> str:
    """Run a burst worker `name` of `stack` on `queue_names` until they are empty; the lines it logged.

    Raises psutil.TimeoutExpired if it still runs after `timeout` s (it is stopped first). Other options go
    to workers.worker_argv (`simple=True`: the store's SimpleWorker, which runs each job in the worker itself).
    """
    worker, log_start = _start(stack, name, queue_names, burst=True, **options)
    try:
        worker.wait(timeout)
    except psutil.TimeoutExpired:
        stop(worker, timeout=1)
        raise
    if log_start is None:
        return stack.log(name, 1000)
    with open(stack.log_path(name), "rb") as log:
        log.seek(log_start)
        return log.read().decode(errors="replace")


def start(stack: Stack, name: str, queue_names: list[str] | None = None, *, wait_ready: bool = False,
          **options) -> psutil.Process:
    """Start worker `name` of `stack` on `queue_names` and give it back (stop it with `stop` below).

    `wait_ready`: once it is ready (stack.worker_ready: registered in Redis, handling SIGTERM; StartError if it
    exits first, TimeoutError if it takes START_TIMEOUT s). Options as for `run`, `burst` among them.
    """
    worker, _ = _start(stack, name, queue_names, **options)
    if wait_ready:
        connection = queues.connect(stack.settings)
        try:
            wait_until(lambda: processes.gone(worker) or worker_ready(connection, f"{stack.tag}.{name}", worker),
                       START_TIMEOUT, what=f"{name} to start")
        except TimeoutError:
            stop(worker, timeout=1)
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


def stop(worker: psutil.Process, timeout: float = 5.0) -> None:
    """Stop a worker started here, and what it started (its scheduler, a work-horse): a forked worker's processes
    do not carry the run tag where Stack.stop looks for it (/proc/PID/environ is the fork server's)."""
    try:
        family = [worker, *worker.children(recursive=True)]
    except psutil.Error:
        family = [worker]
    processes.stop(family, timeout=timeout)


def _become_worker(argv: list[str], env: dict, cwd: str, log_fd: int) -> None:
    """In the forked child: become `argv` (an `rq worker …` command line) as exec would make it, then exit."""
    status = 1
    try:
        for module in [m for m in sys.modules if m.split(".")[0] in LEARNER_PACKAGES]:
            del sys.modules[module]  # first: what a learner's module held (a socket, a file) is closed now
        gc.freeze()  # nothing inherited is collected later: an old socket would close a descriptor reused since
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # as Popen's close_fds: the check's report pipe, its sockets
        # Line by line, as PYTHONUNBUFFERED gives a worker started afresh.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True, errors="backslashreplace")
        os.umask(0o077)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        time.tzset()
        for number in (signal.SIGTERM, signal.SIGCHLD, signal.SIGALRM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.alarm(0)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        _unconfigure_logging()
        # An `rq` command's path: its own folder, PYTHONPATH (the submission's folder), then Python's and the
        # installed packages' (RQ adds the working folder itself: --path .).
        installed = [p for p in sys.path if _installed(p)]
        sys.path[:] = [os.path.dirname(argv[0]), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep)), *installed]
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


def _installed(entry: str) -> bool:
    """Whether a sys.path entry is Python's own or the virtual environment's (or a path hook's, like an editable
    install's), as every Python started from it has, rather than one a program added."""
    if entry == "":  # the working folder, put first by `python -m` or -c
        return False
    if not os.path.isabs(entry):
        return not os.path.exists(entry)  # a path hook's name, not a folder
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return any(entry == prefix or entry.startswith(prefix + os.sep) for prefix in prefixes)


def _unconfigure_logging() -> None:
    """The root logger as a fresh Python has it (what logging.basicConfig in the learner's code changes): RQ
    sets up its own handlers only where no logger above has one. Other loggers keep what their modules set."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
