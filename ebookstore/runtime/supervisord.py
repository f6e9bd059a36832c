"""`ebookstore up`'s processes under supervisord: each one restarted when it dies, `supervisorctl` to look and steer.

supervisord (the `supervisor` package) is Python's usual keeper of a project's processes, and the
one RQ's documentation recommends ("Putting RQ under supervisor"). `up` writes its configuration
(one `[program:…]` section per process, below) into the state folder, mode 0600, and starts it
in the foreground of its own session, tagged with the run tag like every other process of the run:

- each program has the stop signal and grace its process needs: TERM everywhere; the workers get
  WORKER_GRACE seconds for RQ's warm shutdown (the job in progress finishes), then SIGKILL to their
  process group (the worker and its scheduler child);
- `autorestart=true`: a program that exits is started again at once, whatever its exit status
  (SIGKILL included); one that dies within `startsecs` of starting is retried with a back-off
  (1 s, 2 s, 3 s …) `startretries` times before supervisord gives up on it (FATAL; `ebookstore up`
  starts it again);
- Redis stays in the foreground (`--daemonize no`) and reads its password from its 0600 file; the
  other programs inherit supervisord's environment (the password is in REDIS_URL there): neither
  the configuration file nor any command line holds it;
- the control socket is a Unix socket in the state folder (0700), never a TCP port:
  `supervisorctl -c STATE/supervisord.conf status | stop workers:worker-1 | start … | tail …`;
- logs per run: STATE/logs/RUN_TAG/NAME.log, and supervisord.log for supervisord's own decisions.

Two things supervisord cannot do for RQ, because it knows only the processes it started: a worker's
work-horse (its own process group, re-parented when the worker is killed) and its scheduler child.
`python -m ebookstore.runtime.supervisord worker` (the workers' command) covers both: before it
becomes `rq worker` it stops the scheduler that this slot's killed predecessor left running (it
would hold the scheduler lock), leaves the predecessor's work-horse to finish its job, and names
the worker after its own PID (RQ refuses a name that a killed worker still holds registered).
Whatever is left at `ebookstore down` (a horse still busy) is found by run tag and stopped after
supervisord. That is all that remains of the course's own worker supervisor of earlier versions.

With EBOOKSTORE_QUEUE_BACKEND=celery or dramatiq (backends/), the `workers` program is that library's
own worker program, one main process whose pool processes are its children in its process group:
TERM starts its warm (Celery) or graceful (Dramatiq) shutdown, `killasgroup` ends the whole group after
WORKER_GRACE, and `down` finds anything left by run tag. With `inline` there are no workers, no Redis and
no cron: the web app and the relay run each job themselves.

supervisord itself is restarted by nothing here (in production, systemd runs it): killed, it leaves
its programs running unsupervised, and `ebookstore up` stops them and starts the stack again.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shlex
import sys
import tempfile
import xmlrpc.client
from pathlib import Path

import psutil

from ebookstore import credentials
from ebookstore.config import Settings
from ebookstore.runtime import processes
from ebookstore.runtime.processes import PROCESS_NAME, RUN_TAG

# Files in the state folder, per kind of run: "up" (the whole stack), "workers" (`ebookstore workers`).
CONFIG_FILES = {"up": "supervisord.conf", "workers": "supervisord-workers.conf"}
SOCKET_FILES = {"up": "supervisor.sock", "workers": "supervisor-workers.sock"}
MAX_SOCKET_PATH = 100   # bytes: a Unix socket's path must fit in 108 (sun_path), NUL included
WORKER_GRACE = 30       # seconds a worker may take to finish its job when stopped (warm shutdown)
START_RETRIES = 10      # tries, 1 s, 2 s … 10 s apart, before supervisord gives a program up (FATAL)
WORKER_NAME = "{worker}"  # in the workers' command: replaced by each worker's own name as it starts


@dataclasses.dataclass(frozen=True)
class Program:
    """One `[program:NAME]` section: a process of the stack and how supervisord keeps it."""

    name: str
    argv: tuple[str, ...]
    priority: int             # lower starts first and stops last: Redis first, web last
    stopwaitsecs: int = 5     # seconds between the stop signal and SIGKILL
    startsecs: int = 1        # up this long counts as started; dying sooner is retried with back-off
    numprocs: int = 1
    killasgroup: bool = False  # SIGKILL the program's whole process group (a worker and its scheduler)

    def section(self, log_dir: Path, autostart: bool) -> str:
        many = self.numprocs > 1 or self.name == "workers"
        process_name = "worker-%(process_num)d" if many else self.name
        command = shlex.join(self.argv).replace("%", "%%")  # supervisord expands %(name)s in its values
        lines = [
            f"[program:{self.name}]",
            f"command={command}",
            f"process_name={process_name}",
            f"numprocs={self.numprocs}",
            "numprocs_start=1" if many else "",
            f"priority={self.priority}",
            # `up` starts them one by one (autostart=false), each once the one before answers.
            f"autostart={'true' if autostart else 'false'}",
            "autorestart=true",         # any exit, any status: start it again
            f"startsecs={self.startsecs}",
            f"startretries={START_RETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={self.stopwaitsecs}",
            f"killasgroup={'true' if self.killasgroup else 'false'}",
            "umask=077",
            # The run's processes find themselves by name in their environment (status, down, clean-ups).
            f'environment={PROCESS_NAME}="{process_name}"',
            "redirect_stderr=true",
            f"stdout_logfile={_escape(log_dir)}/{process_name}.log",
            "stdout_logfile_maxbytes=10MB",
            "stdout_logfile_backups=1",
        ]
        return "\n".join(line for line in lines if line) + "\n"


def programs(settings: Settings, count: int, *, weighted: bool = False, names=None) -> list[Program]:
    """The stack's programs (or those in `names`), in start order."""
    # Imported here: the workers' command (worker_main) imports as little as it can, it starts often.
    from ebookstore import backends, workers
    from ebookstore.runtime import redis_server
    from ebookstore.runtime.stack import Stack  # the commands each process runs: one place for them
    python = sys.executable
    wrapper = [python, "-m", "ebookstore.runtime.supervisord", "worker"]  # names the worker (see worker_main)
    if settings.queue_backend == "rq":  # `count` workers, each forking a work-horse per job
        rq_worker = workers.worker_argv(settings, WORKER_NAME, weighted=weighted, with_scheduler=True)
        worker = Program("workers", tuple(wrapper + rq_worker), priority=30, numprocs=count,
                         stopwaitsecs=WORKER_GRACE, startsecs=2, killasgroup=True)
    else:  # the library's own program: one main process that forks `count` worker processes (None: inline)
        argv = backends.worker_argv(settings, count, WORKER_NAME, shutdown_grace=WORKER_GRACE - 5)
        worker = argv and Program("workers", tuple(wrapper + argv), priority=30, stopwaitsecs=WORKER_GRACE,
                                  startsecs=2, killasgroup=True)
    every = [
        Program("redis", tuple(redis_server.argv(settings)), priority=10, stopwaitsecs=10),
        Program("mail", tuple(Stack.mail_argv(settings)), priority=20),
        worker,
        Program("cron", (python, "-m", "ebookstore.cli", "cron"), priority=40),
        Program("relay", (python, "-m", "ebookstore.cli", "relay"), priority=50),
        Program("web", tuple(Stack.web_argv(settings)), priority=60),
    ]
    if settings.external_redis_url:
        every = every[1:]  # REDIS_URL names a Redis somebody else runs
    if settings.queue_backend == "inline":  # jobs run in the web app and the relay: no Redis, no workers,
        every = [p for p in every if p and p.name not in ("redis", "cron")]  # and RQ's cron needs Redis
    return [p for p in every if names is None or p.name in names]


def _escape(path) -> str:
    return str(path).replace("%", "%%")


def config_path(home: Path, kind: str = "up") -> Path:
    return home / CONFIG_FILES[kind]


def socket_path(home: Path, kind: str = "up") -> Path:
    """Where supervisord listens: STATE/supervisor.sock, or — when that path is too long for a Unix
    socket — a private folder of this user's under the temporary directory, named after the state folder."""
    path = home / SOCKET_FILES[kind]
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    folder = Path(tempfile.gettempdir()) / f"ebookstore-{os.getuid()}"
    credentials.private_home(folder)
    return folder / f"{hashlib.sha256(os.fsencode(path)).hexdigest()[:16]}.sock"


def config_text(settings: Settings, log_dir: Path, progs: list[Program], kind: str = "up") -> str:
    home, sock = settings.home, socket_path(settings.home, kind)
    head = f"""\
; Written by `ebookstore {kind}` at every start (mode 0600). Look and steer with:
;   supervisorctl -c {_escape(config_path(home, kind))} status | stop NAME | start NAME | restart NAME | tail -f NAME
; No password here: the programs inherit it from supervisord's environment (REDIS_URL, RQ_REDIS_URL),
; and redis-server reads it from its own 0600 file.

[supervisord]
nodaemon=true
silent=true
logfile={_escape(log_dir / "supervisord.log")}
logfile_maxbytes=10MB
logfile_backups=1
pidfile={_escape(home / f"supervisord-{kind}.pid")}
childlogdir={_escape(log_dir)}
umask=077
minfds=256
minprocs=64
identifier=ebookstore

[unix_http_server]
; A Unix socket in the (0700) state folder, itself 0700: only this user can steer the stack.
file={_escape(sock)}
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{_escape(sock)}

"""
    return head + "\n".join(p.section(log_dir, autostart=kind != "up") for p in progs)


def write_config(settings: Settings, log_dir: Path, progs: list[Program], kind: str = "up") -> Path:
    path = config_path(settings.home, kind)
    credentials.write_private(path, config_text(settings, log_dir, progs, kind))
    return path


def argv(config: Path) -> list[str]:
    """supervisord in the foreground (-n): the Stack that starts it keeps it in a session of its own."""
    return [str(Path(sys.executable).parent / "supervisord"), "-n", "-c", str(config)]


def ctl_argv(home: Path, *args: str, kind: str = "up") -> list[str]:
    """`supervisorctl -c STATE/supervisord.conf ARGS…`: what a learner types in a terminal."""
    return [str(Path(sys.executable).parent / "supervisorctl"), "-c", str(config_path(home, kind)), *args]


def rpc(home: Path, timeout: float = 5.0, kind: str = "up"):
    """supervisord's XML-RPC interface (what supervisorctl speaks) over its Unix socket."""
    from supervisor.xmlrpc import SupervisorTransport
    transport = SupervisorTransport(None, None, f"unix://{socket_path(home, kind)}")
    transport.timeout = timeout
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def answers(home: Path, kind: str = "up") -> bool:
    """Whether supervisord answers on its control socket."""
    try:
        return rpc(home, timeout=1, kind=kind).getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


def states(home: Path, kind: str = "up") -> dict[str, dict]:
    """{"workers:worker-1": info, "redis:redis": info, …}: supervisorctl status, as data."""
    return {f"{i['group']}:{i['name']}": i for i in rpc(home, kind=kind).getAllProcessInfo()}


def start(stack, progs: list[Program], kind: str = "up"):
    """Write the configuration and start supervisord for `stack` (tagged, its own session); its psutil.Process.

    With kind "up" the programs wait to be started (start_program); with "workers" they start at once.
    """
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(stack.settings, stack.log_dir, progs, kind)
    if not answers(stack.settings.home, kind):  # a running one is given back (Stack.start): keep its socket
        socket_path(stack.settings.home, kind).unlink(missing_ok=True)  # a killed one's: would refuse to start
    return stack.start("supervisord" if kind == "up" else kind, argv(config),
                       ready=lambda: answers(stack.settings.home, kind))


def start_program(home: Path, name: str, kind: str = "up") -> None:
    """`supervisorctl start NAME:*` without waiting for startsecs: the caller waits for what it needs."""
    rpc(home, kind=kind).startProcessGroup(name, False)


# -- the workers' command ------------------------------------------------------------------------
def worker_main(rq_argv: list[str]) -> None:
    """Become `rq_argv` (an `rq worker` command, or Celery's or Dramatiq's) for this slot (worker-N), after
    the clean-up its killed predecessor could not do. The worker's name gets this process's PID: RQ refuses a
    name that a killed worker still holds registered (until its TTL runs out), and the PID says which process it is."""
    slot, tag = os.environ[PROCESS_NAME], os.environ[RUN_TAG]
    # The predecessor's scheduler child runs on, orphaned, holding the scheduler lock: stop it. Its
    # work-horse, orphaned too, is left to finish the job it runs (it then exits by itself).
    leftovers = [p for p in processes.tagged(tag, slot) if processes.role(p) == "scheduler (orphaned)"]
    processes.stop(leftovers, timeout=3)
    # A killed Dramatiq main process leaves its worker processes running, each still taking messages:
    # ask them to finish the message in hand and exit (SIGTERM, Dramatiq's graceful stop), and not wait.
    # (Celery's pool processes notice their main process is gone and exit by themselves.)
    for orphan in processes.tagged(tag, slot):
        if processes.library_role(orphan) == "dramatiq worker process (orphaned)":
            with contextlib.suppress(psutil.Error):
                orphan.terminate()
    argv = [word.replace(WORKER_NAME, f"{tag}.{slot}.{os.getpid()}") for word in rq_argv]
    print(f"{slot} (PID {os.getpid()}) becomes: {shlex.join(argv)}", flush=True)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"] or len(sys.argv) < 4:
        sys.exit("usage: python -m ebookstore.runtime.supervisord worker RQ-WORKER-COMMAND…")
    worker_main(sys.argv[2:])
