"""Starting and stopping the course's processes: Redis, workers, cron, web, mail catcher.

One `Stack` is one run (a notebook, a test session, `ebookstore up`). A name
stands for one process of the run: starting a name that already runs gives the
running process back (or, when asked for with another command, replaces it),
never a second one. Each process it starts gets the run tag in its environment, its own session (so a
Ctrl-C in the terminal does not reach it) and a log file under
$EBOOKSTORE_HOME/logs/<run tag>/. `stop()` finds the run's processes by tag — the RQ
work-horse included, which sits in its own process group and may have been
re-parented — and stops them: SIGTERM first, SIGKILL after a timeout. By
default a Stack also stops everything at interpreter exit.
"""
from __future__ import annotations

import atexit
import configparser
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
from redis import Redis
from redis.exceptions import RedisError
from rq.worker import Worker

from ebookstore import mail, workers
from ebookstore.config import PROJECT_ROOT, Settings
from ebookstore.credentials import private_home
from ebookstore.runtime import processes, redis_server
from ebookstore.runtime.processes import PROCESS_NAME, RUN_TAG, wait_until

START_TIMEOUT = 15  # seconds a service may take to answer after starting
KEPT_LOG_RUNS = 10  # a state folder keeps the logs of this many runs; older ones are deleted
WEB_THREADS = 4     # waitress's request threads (its default): more only queue up on SQLite's write lock


def new_tag(prefix: str = "ebs") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


class StartError(RuntimeError):
    """A process did not start; the message ends with the tail of its log."""


class Stack:
    """The processes of one run, each started with the run tag `tag`."""

    def __init__(self, settings: Settings | None = None, tag: str | None = None,
                 stop_at_exit: bool = True, cwd: Path | None = None, preload: tuple[str, ...] = (),
                 say=None):
        """`preload`: job modules besides the store's that this run's workers import before forking.

        `say(line)`: where to tell that a start gave back a running process or replaced it (a notebook prints).
        """
        self.settings = settings or Settings.from_env()
        private_home(self.settings.home)
        self.cwd = cwd or PROJECT_ROOT  # where processes start; job functions are imported from here
        self.tag = tag or new_tag()
        self.preload = tuple(preload)
        self.log_dir = self.settings.home / "logs" / self.tag
        self._popens: dict[str, subprocess.Popen] = {}
        self._commands: dict[str, tuple] = {}  # name -> (argv, env) it was started with
        self._log_starts: dict[str, int] = {}  # name -> where in its log the process started last begins
        self.closed: str | None = None  # why this run starts no more processes (a notebook's clean-up cell ran)
        self.say = say or (lambda line: print(line, file=sys.stderr))
        if stop_at_exit:
            atexit.register(self.stop)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- starting -----------------------------------------------------------
    def env(self, name: str, extra: dict | None = None) -> dict:
        """The environment of process `name`: ours, the settings, the run tag."""
        env = {**os.environ, **self.settings.to_env(), **(extra or {})}
        env[RUN_TAG], env[PROCESS_NAME] = self.tag, name
        # Who started the run (a notebook's kernel, say): leftovers of a dead owner can be found. A process
        # of the run that starts more (the supervisor its workers) passes the run's owner on.
        inherited = os.environ.get(processes.OWNER) if os.environ.get(RUN_TAG) == self.tag else None
        env[processes.OWNER] = inherited or processes.owner_id()
        if self.preload:
            env[workers.PRELOAD_VARIABLE] = ",".join(self.preload)
        # Workers import job functions from ebookstore, exercises/ and solutions/.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.cwd), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"  # log lines appear as they happen
        return env

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log(self, name: str, lines: int = 20) -> str:
        """The last `lines` lines that process `name` wrote to its log.

        Of the process this Stack started last under that name: a log keeps the lines of earlier ones
        (a cell run again), and a `ready` test that read them would pass before the new one is ready.
        """
        path = self.log_path(name)
        if not path.exists():
            return ""
        with open(path, "rb") as log:
            log.seek(self._log_starts.get(name, 0))
            text = log.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def start(self, name: str, argv: list[str], *, ready=None, port: int | None = None,
              env: dict | None = None, timeout: float = START_TIMEOUT) -> psutil.Process:
        """Start `argv` as process `name`; wait until `ready()` is true, if given.

        If process `name` of this run already runs, it is given back (after `ready()`) when it was
        started with the same command, and stopped and started afresh when not: a name is one
        process, never two. Either is told in one line (see `say`).
        `port` is the TCP port the process will listen on: it must be free, or we
        would mistake whoever holds it for our new process.
        """
        if self.closed:
            raise StartError(self.closed)
        command = (list(argv), dict(env or {}))
        running = self.running(name)
        if running is not None:
            if self._commands.get(name, command) == command:
                self.say(f"{name} already runs (PID {running.pid}): using it, not starting a second one "
                         f"(stop it first to start it afresh)")
                if ready is not None:
                    self._wait_ready(name, running, ready, timeout)
                return running
            self.say(f"{name} runs (PID {running.pid}) but was started with another command: "
                     f"{self.stop(name)}; starting it afresh")
        if port is not None:
            _require_free(port, name)
        if not self.log_dir.exists():
            self.log_dir.mkdir(parents=True)
            _prune_logs(self.log_dir.parent)
        # An Interrupt between the fork and the lines that record the process would leave it running under no
        # name of ours (a cell run again then took it for a process started elsewhere): it waits until then.
        with processes.interrupt_held() as interrupted, open(self.log_path(name), "ab") as log:
            self._log_starts[name] = log.tell()
            popen = subprocess.Popen(
                argv, cwd=self.cwd, env=self.env(name, env), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                umask=0o077,  # what it writes (database, Maildir, Redis's files) is its owner's alone
            )
            self._popens[name], self._commands[name] = popen, command
            processes.track(popen)  # reaped through it wherever processes.gone() sees it exit: its status is kept
        if interrupted:
            self.say(f"interrupted while {name} was starting: {self.stop(name)}")
            raise KeyboardInterrupt
        proc = psutil.Process(popen.pid)
        if ready is not None:
            try:
                self._wait_ready(name, proc, ready, timeout)
            except KeyboardInterrupt:  # Interrupt in Jupyter while it starts: nothing half-started stays
                self.say(f"interrupted while {name} was starting: {self.stop(name)}")
                raise
        return proc

    def _wait_ready(self, name: str, proc: psutil.Process, ready, timeout: float) -> None:
        popen = self._popens.get(name)
        ours = popen if popen is not None and popen.pid == proc.pid else None

        def exited():  # our own child: ask Popen, which reaps it and keeps its exit status
            return ours.poll() is not None if ours is not None else processes.gone(proc)
        try:
            wait_until(lambda: exited() or ready(), timeout, what=f"{name} to start")
        except TimeoutError:
            self.stop(name)
            raise StartError(f"{name} did not answer within {timeout:g} s:\n{self.log(name)}") from None
        if exited():
            status = ours.returncode if ours is not None else "?"
            raise StartError(f"{name} exited with status {status}:\n{self.log(name)}")

    def running(self, name: str) -> psutil.Process | None:
        """The live process `name` of this run (the one started under that name, not its children), or None."""
        popen = self._popens.get(name)
        if popen is not None:  # started by this Stack: that process, and not an orphan it left (a horse)
            if popen.poll() is not None:
                return None
            try:
                proc = psutil.Process(popen.pid)
            except psutil.NoSuchProcess:  # reaped in between, by another thread's wait
                return None
            # Just killed, it may be a zombie that poll() could not reap yet: gone, not to be given back.
            return None if processes.gone(proc) else proc
        # Started by another Stack of the same run (a CLI command): a worker, not its horse or scheduler.
        found = [p for p in processes.tagged(self.tag, name) if not processes.gone(p)
                 and not processes.role(p).startswith(("work-horse", "scheduler"))]
        return found[0] if found else None

    def redis(self) -> psutil.Process | None:
        """Start the course's redis-server, unless REDIS_URL names another one or ours already runs."""
        if self.settings.external_redis_url:
            return None
        port = self.settings.redis_port
        holder = processes.listener_pid(port)
        if holder is not None and self.running("redis") is None:
            proc = psutil.Process(holder)
            same_home = processes.environ(proc).get("EBOOKSTORE_HOME") == str(self.settings.home)
            if same_home and _takes_no_password(port):  # redis-py's client would not notice: it accepts that
                raise StartError(
                    f"the Redis on port {port} (PID {holder}) takes no password: an earlier version of the "
                    f"course started it for {self.settings.home}. Run `ebookstore down`, then start again.")
            if same_home and self.ping():
                return proc  # `ebookstore up` (or another notebook) runs the course's Redis: share it
        fresh = self.running("redis") is None
        proc = self.start("redis", redis_server.argv(self.settings), ready=self.ping, port=port)
        if fresh:
            self._clear_scheduler_locks()
        return proc

    def _clear_scheduler_locks(self) -> None:
        # A Redis we just started has no scheduler connected yet, so every scheduler lock in it
        # was restored from the append-only file: left by a run that stopped Redis before its
        # workers, or was killed. RQ would wait up to two minutes for such a lock to expire.
        connection = Redis.from_url(self.settings.redis_url, socket_timeout=2)
        stale = list(connection.scan_iter("rq:scheduler-lock:*"))
        if stale:
            connection.delete(*stale)

    def ping(self) -> bool:
        try:
            return Redis.from_url(self.settings.redis_url, socket_connect_timeout=0.5,
                                  socket_timeout=0.5).ping()
        except Exception:  # not up yet: connection refused, loading, …
            return False

    def worker(self, name: str = "worker", queue_names: list[str] | None = None, *,
               weighted: bool = False, burst: bool = False, with_scheduler: bool = False,
               simple: bool = False, extra: list[str] | None = None, env: dict | None = None,
               wait_ready: bool = False, **options) -> psutil.Process:
        """Start an `rq worker` named `<tag>.<name>` on the store's queues.

        `wait_ready`: return only once the worker is ready (worker_ready: registered in Redis, as the dashboard
        sees it, and handling SIGTERM). Other options go to workers.worker_argv.
        """
        full_name = f"{self.tag}.{name}"
        argv = workers.worker_argv(self.settings, full_name, queue_names, weighted=weighted,
                                   burst=burst, with_scheduler=with_scheduler, simple=simple, extra=extra,
                                   **options)
        connection = Redis.from_url(self.settings.redis_url, socket_timeout=2)
        running = self.running(name)
        if running is not None and _shutting_down(connection, full_name):
            # Asked to stop (a SIGTERM, then an interrupted cell): it takes no new job and exits soon.
            self.say(f"{name} (PID {running.pid}) is shutting down, so takes no new job: {self.stop(name)}; "
                     "starting it afresh")
            running = None
        if running is None:
            self._forget_dead_worker(connection, full_name)
        ready = (lambda: worker_ready(connection, full_name, self.running(name))) if wait_ready else None
        return self.start(name, argv, env=env, ready=ready)

    def _forget_dead_worker(self, connection: Redis, full_name: str) -> None:
        # A worker killed with SIGKILL or SIGHUP stays registered until its heartbeat runs out, and
        # RQ refuses to start another worker of that name meanwhile: the new one would exit at once.
        # No process of that name runs in this run, so the registration is a dead worker's.
        try:
            key = f"rq:worker:{full_name}"
            dead = Worker.find_by_key(key, connection) if not connection.hexists(key, "death") else None
            if dead is not None:
                dead.register_death()
                self.say(f"RQ still listed the worker {full_name} of an earlier start, which is gone: unlisted it")
        except RedisError:
            pass  # no Redis (yet): the worker will say so in its log

    def relay(self) -> psutil.Process:
        """The outbox relay: enqueues jobs that purchases recorded while Redis was unreachable."""
        return self.start("relay", [sys.executable, "-m", "ebookstore.cli", "relay"])

    def cron(self, env: dict | None = None) -> psutil.Process:
        return self.start("cron", [sys.executable, "-m", "ebookstore.cron"], env=env)

    def web(self, name: str = "web", settings: Settings | None = None, server: str = "waitress") -> psutil.Process:
        """The store's web app on `settings.web_port` (default: this stack's settings); see web_argv."""
        settings = settings or self.settings
        port = settings.web_port
        return self.start(name, self.web_argv(settings, server), ready=lambda: processes.port_open(port), port=port,
                          env=settings.to_env())

    @staticmethod
    def web_argv(settings: Settings, server: str = "waitress") -> list[str]:
        """waitress (a production WSGI server: a fixed pool of threads) or Flask's development server."""
        bin_dir = Path(sys.executable).parent
        if server == "flask":
            return [str(bin_dir / "flask"), "--app", "ebookstore.web", "run", "--host", "127.0.0.1",
                    "--port", str(settings.web_port), "--no-reload"]
        return [str(bin_dir / "waitress-serve"), f"--listen=127.0.0.1:{settings.web_port}",
                f"--threads={WEB_THREADS}", "--call", "ebookstore.web:create_app"]

    def mail(self) -> psutil.Process:
        """An SMTP catcher (aiosmtpd) that stores what it receives in the store's Maildir."""
        mail.maildir(self.settings)  # aiosmtpd's Mailbox handler expects cur/ new/ tmp/
        argv = self.mail_argv(self.settings)
        port = self.settings.smtp_port
        return self.start("mail", argv, ready=lambda: processes.port_open(port), port=port)

    @staticmethod
    def mail_argv(settings: Settings) -> list[str]:
        return [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{settings.smtp_port}",
                "-c", "aiosmtpd.handlers.Mailbox", str(settings.maildir)]

    # -- looking and stopping -------------------------------------------------
    def wait(self, name: str, timeout: float) -> int:
        """Wait up to `timeout` s for process `name` (started by this Stack) to exit; its exit status.

        Negative -N: it was ended by signal N (as `subprocess` reports it). Raises TimeoutError if it still runs.
        """
        popen = self._popens.get(name)
        if popen is None:
            raise KeyError(f"this run started no process named {name!r}")
        try:
            return popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{name} (PID {popen.pid}) still runs after {timeout:g} s") from None

    def processes(self, name: str | None = None) -> list[psutil.Process]:
        """The live processes of this run (of process `name`), found by run tag."""
        found = {p.pid: p for p in processes.tagged(self.tag, name)}
        # Also those we started ourselves, in case one hid its environment from us.
        for key, popen in self._popens.items():
            if name in (None, key) and popen.poll() is None and popen.pid not in found:
                found[popen.pid] = psutil.Process(popen.pid)
        return sorted(found.values(), key=lambda p: p.pid)

    def stop(self, name: str | None = None, timeout: float = 5.0) -> Stopped:
        """Stop this run's processes (or those of `name`): SIGTERM, then SIGKILL after `timeout` s.

        A quick stop, not a warm shutdown: a busy worker's work-horse gets SIGTERM with the worker,
        so the job in progress fails ("Work-horse terminated unexpectedly"). Redis goes last, so that
        the worker can record that in Redis. (Workers under supervisord get SIGTERM from it alone,
        and finish their job first, within supervisord's WORKER_GRACE: see stop_redis_last.)
        """
        outcome = stop_redis_last(self.processes(name), timeout)
        for key, popen in list(self._popens.items()):
            if name in (None, key):
                try:  # reap it, so no zombie is left behind (and a start after this stop starts afresh)
                    popen.wait(0.5)
                except subprocess.TimeoutExpired:
                    pass
                if popen.returncode is not None:
                    del self._popens[key]
        return outcome


def worker_ready(connection: Redis, full_name: str, proc: psutil.Process | None) -> bool:
    """Whether worker `full_name`, process `proc`, has registered in Redis and handles SIGTERM: RQ installs its
    signal handlers a moment after it registers (and forks its scheduler); a SIGTERM before that ends the
    worker at once, without a warm shutdown (6 of 8 workers SIGTERMed as they registered, here)."""
    return proc is not None and registered(connection, full_name) and processes.handles(proc, signal.SIGTERM)


def registered(connection: Redis, full_name: str) -> bool:
    """Whether worker `full_name` has registered in Redis (as the dashboard sees it), and not an earlier one of
    that name: a stopped worker's entry stays a minute, marked with its death."""
    key = f"rq:worker:{full_name}"
    return bool(connection.exists(key)) and not connection.hexists(key, "death")


def _require_free(port: int, name: str) -> None:
    holder = processes.listener_pid(port)
    if holder is None and not processes.port_open(port):
        return
    try:
        proc = psutil.Process(holder) if holder else None
        env = processes.environ(proc) if proc else {}
        who = f"PID {holder} ({proc.name()})" if proc else "another process"
    except psutil.NoSuchProcess:
        env, who = {}, "a process that just exited"
    uid = processes.listener_uid(port)
    if holder is None and uid is not None and uid != os.getuid():  # another user's: we can't see its PID
        who = f"a process of user {processes.user_name(uid)}"
    if env.get(RUN_TAG):  # one of the course's own processes: never advise killing it by port
        raise StartError(
            f"cannot start {name}: port {port} is used by the course's own {env.get(PROCESS_NAME, 'process')} "
            f"({who}, run tag {env[RUN_TAG]}, state folder {env.get('EBOOKSTORE_HOME', '?')}). "
            "Stop that run first: `ebookstore down` for `ebookstore up`, or the clean-up cell of the "
            "notebook that started it.")
    raise StartError(f"cannot start {name}: port {port} is already in use by {who}. "
                     f"Stop that program, or choose another port (see EBOOKSTORE_*_PORT in the README).")


def _shutting_down(connection: Redis, full_name: str) -> bool:
    """Whether RQ's worker `full_name` has been asked to stop (a warm shutdown: it finishes its job, takes no other)."""
    try:
        return bool(connection.hexists(f"rq:worker:{full_name}", "shutdown_requested_date"))
    except RedisError:
        return False


def _takes_no_password(port: int) -> bool:
    """Whether the Redis on `port` answers a client that has no password (a Redis of an older course version)."""
    try:
        return Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
    except RedisError:
        return False


def _is_redis_server(proc) -> bool:
    try:
        return proc.name().startswith("redis-server")  # also one started by another program (honcho)
    except psutil.Error:
        return False


def _is_supervisord(proc) -> bool:
    try:
        return any(os.path.basename(word) == "supervisord" for word in proc.cmdline()[:2])
    except psutil.Error:
        return False


def control_sockets(keeper: psutil.Process) -> list[str]:
    """The Unix socket a running supervisord listens on: the one its configuration (`-c FILE`) names.

    Not what the kernel lists for the process: supervisord binds PATH.PID and renames it PATH, and the
    kernel goes on showing the first name (psutil none at all for a path with a space in it).
    """
    try:
        command = keeper.cmdline()
        config = configparser.ConfigParser()  # its values escape % as %%, as supervisord's own parser reads them
        config.read(Path(keeper.cwd(), command[command.index("-c") + 1]))
        return [config.get("unix_http_server", "file")]
    except (psutil.Error, ValueError, IndexError, configparser.Error):
        return []


@contextlib.contextmanager
def nudged(keepers, every: float = 0.1):
    """While the supervisords in `keepers` stop: connect to their control sockets every `every` s.

    supervisord looks at its programs once a second, or sooner when one of its sockets has something
    to read; a signal does not cut that wait short (Python resumes it: PEP 475). So it notices SIGTERM up
    to a second late, and again each program's exit as it stops them one group after another. An
    empty connection wakes it: it notices each within `every` s instead.
    """
    paths = [path for keeper in keepers for path in control_sockets(keeper)]
    done = threading.Event()

    def nudge():
        while not done.wait(every):
            for path in paths:
                with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(1)
                    sock.connect(path)

    thread = threading.Thread(target=nudge, name="supervisord-nudge", daemon=True)
    try:
        if paths:
            thread.start()
    except RuntimeError:  # at interpreter exit (a Stack's atexit stop), Python 3.12.0-3.12.2 refuse new threads
        pass  # a nudge only saves time: stop without it
    try:
        yield
    finally:
        done.set()
        if thread.is_alive():
            thread.join(2)


def _prune_logs(logs: Path) -> None:
    """Keep the log folders of the newest KEPT_LOG_RUNS runs (each run logs into a folder of its own)."""
    runs = sorted((d for d in logs.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True)
    for old in runs[KEPT_LOG_RUNS:]:
        for f in old.iterdir():
            f.unlink(missing_ok=True)
        old.rmdir()


class Stopped(dict):
    """{pid: "exited" | "killed"} of the processes a stop ended; printed as one readable line."""

    def __init__(self, outcome: dict[int, str], names: dict[int, str]):
        super().__init__(outcome)
        self.names = names

    def __str__(self) -> str:
        if not self:
            return "nothing to stop"
        parts = [f"{self.names.get(pid, '?')} (PID {pid}{', after SIGKILL' if how == 'killed' else ''})"
                 for pid, how in sorted(self.items())]
        return f"stopped {len(self)} process{'es' if len(self) != 1 else ''}: " + ", ".join(parts)

    __repr__ = __str__


def stop_everything(home: Path, timeout: float = 5.0) -> Stopped:
    """Stop every process any run of the course started for state folder `home` (by tag).

    Redis goes last: workers (and their schedulers) first, so that none is left holding a
    scheduler lock in Redis's append-only file, and every job in progress can report its end.
    """
    mine = []
    for proc in psutil.process_iter():
        env = processes.environ(proc)
        if env.get(RUN_TAG) and Path(env.get("EBOOKSTORE_HOME", "")) == Path(home):
            mine.append(proc)
    return stop_redis_last(mine, timeout)


SUPERVISORD_STOP_TIMEOUT = 60  # seconds supervisord may take to stop its programs, one group after another


def stop_redis_last(procs, timeout: float = 5.0) -> Stopped:
    """Stop `procs`: everything but Redis first, then Redis (see stop_everything).

    A supervisord among them is asked first (SIGTERM): it stops its programs in order, Redis last,
    and exits last — stopped behind its back, a program would be started again. What it does not
    know (a work-horse still busy, a process started beside it) is stopped after it.
    """
    names = {p.pid: processes.environ(p).get(PROCESS_NAME) or _name(p) for p in procs}
    keepers = [p for p in procs if _is_supervisord(p)]
    with nudged(keepers):  # so that it notices SIGTERM, and each program's exit, at once
        outcome = processes.stop(keepers, SUPERVISORD_STOP_TIMEOUT)
    procs = [p for p in procs if p not in keepers]
    is_redis = {p.pid: processes.environ(p).get(PROCESS_NAME) == "redis" or _is_redis_server(p) for p in procs}
    outcome.update(processes.stop([p for p in procs if not is_redis[p.pid]], timeout))
    outcome.update(processes.stop([p for p in procs if is_redis[p.pid]], timeout))
    return Stopped(outcome, names)


def _name(proc) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "?"


# For `ebookstore up`, which starts its processes under supervisord instead of with Stack.start.
require_free = _require_free


def clear_scheduler_locks(stack: Stack) -> None:
    """Delete the scheduler locks a Redis just started restored from its append-only file."""
    stack._clear_scheduler_locks()
