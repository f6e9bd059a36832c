"""Finding, listing and stopping processes with psutil: `ps`, `pgrep`, `lsof` and `kill` in Python.

Every process the course starts carries a run tag in its environment
(EBOOKSTORE_RUN_TAG). Its children inherit it, the RQ work-horse included, so
"every process of this run" is found exactly, even once a process has been
re-parented or has moved to its own process group. Nothing here kills by a
broad name.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import random
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

import psutil

RUN_TAG = "EBOOKSTORE_RUN_TAG"
PROCESS_NAME = "EBOOKSTORE_PROCESS"
OWNER = "EBOOKSTORE_OWNER"  # "PID:start time" of the process that started the run (a notebook's kernel, say)

# psutil status -> the STAT letter `ps` shows
STAT_LETTERS = {
    psutil.STATUS_RUNNING: "R", psutil.STATUS_SLEEPING: "S", psutil.STATUS_DISK_SLEEP: "D",
    psutil.STATUS_STOPPED: "T", psutil.STATUS_TRACING_STOP: "t", psutil.STATUS_ZOMBIE: "Z",
    psutil.STATUS_DEAD: "X", psutil.STATUS_IDLE: "I",
}
STATE_NAMES = {"R": "running", "S": "sleeping", "D": "waiting for I/O", "T": "stopped",
               "t": "stopped by a tracer", "Z": "zombie", "X": "dead", "I": "idle"}


def environ(proc: psutil.Process) -> dict:
    """The environment `proc` started with ({} if we may not read it or it is gone)."""
    try:
        return proc.environ()
    except (psutil.Error, OSError):
        return {}


def tagged(tag: str, name: str | None = None) -> list[psutil.Process]:
    """The live processes started under run tag `tag` (and process name `name`), by PID."""
    found = []
    for proc in psutil.process_iter():
        if not _may_carry(proc, tag):
            continue
        env = environ(proc)
        if env.get(RUN_TAG) == tag and (name is None or env.get(PROCESS_NAME) == name):
            found.append(proc)
    return sorted(found, key=lambda p: p.pid)


def _may_carry(proc: psutil.Process, tag: str) -> bool:
    """False if `proc`'s environment surely lacks run tag `tag`, seen in its raw bytes: a tenth of the cost of
    parsing them as environ() does, for each of the hundreds of processes a class's server runs. True where
    it cannot tell (no /proc, another user's process): environ() then decides."""
    try:
        with open(f"/proc/{proc.pid}/environ", "rb") as raw:
            return os.fsencode(f"{RUN_TAG}={tag}") in raw.read()  # as psutil decodes it: surrogates too
    except OSError:
        return True


def owner_id(proc: psutil.Process | None = None) -> str:
    """`proc` (default: this process) as "PID:start time": unlike a PID alone, never reused."""
    proc = proc or psutil.Process()
    return f"{proc.pid}:{proc.create_time():.2f}"


def owner_alive(proc: psutil.Process) -> bool:
    """Whether the process that started `proc`'s run still runs (True when unknown)."""
    owner = environ(proc).get(OWNER)
    return owner_running(owner) if owner else True


def owner_running(owner: str) -> bool:
    """Whether the process `owner` ("PID:start time", see owner_id) still runs."""
    try:
        return owner_id(psutil.Process(int(owner.split(":")[0]))) == owner
    except (psutil.NoSuchProcess, ValueError):
        return False


def matching(pattern: str) -> list[psutil.Process]:
    """Processes whose full command line matches the regex `pattern`, like `pgrep -f` (never this one)."""
    regex, me = re.compile(pattern), os.getpid()
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid != me and regex.search(" ".join(proc.info["cmdline"] or [])):
            found.append(proc)
    return found


def listener_pid(port: int) -> int | None:
    """The PID listening on TCP `port` on this machine: the listener only, never its clients."""
    if _listening_uids(port) == []:  # nothing listens: no need to look through every process's sockets
        return None
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return conn.pid
    return None


def listener_uid(port: int) -> int | None:
    """The Unix user id owning the socket that listens on TCP `port` (also another user's, whose PID we can't see)."""
    return next(iter(_listening_uids(port) or []), None)


def _listening_uids(port: int) -> list[int] | None:
    """The uids of the sockets listening on TCP `port`, from /proc/net/tcp and tcp6: one line per socket,
    state 0A is LISTEN, the uid is column 8. None where neither table can be read (not Linux)."""
    uids, read, hex_port = [], False, f":{port:04X} "
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        read = True
        for line in lines:
            if hex_port not in line:  # a test run leaves thousands of closed connections here: skip them fast
                continue
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                uids.append(int(fields[7]))
    return uids if read else None


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def work_horse(worker: psutil.Process) -> psutil.Process | None:
    """The RQ work-horse of `worker`: the forked child (same command line) that leads its own process group.

    A worker may briefly have other children too (a helper command it runs), so the first child is not
    necessarily the horse.
    """
    try:
        command = worker.cmdline()
        for child in worker.children():
            if child.cmdline() == command and os.getpgid(child.pid) == child.pid:
                return child
    except (psutil.Error, OSError):
        pass
    return None


LIBRARY_WORKERS = {"celery": ("celery worker", "celery pool process"),
                   "dramatiq": ("dramatiq main", "dramatiq worker process")}


def library_role(proc: psutil.Process) -> str:
    """What a Celery or Dramatiq worker process is ("" for any other): the main process, or one it forked.

    Both run as one main process that leads its process group (supervisord gives each program a group)
    and forks its pool inside that group, with the same command line. A forked one whose main process
    was killed with -9 is re-parented: "(orphaned)" says so (Celery's exit then, Dramatiq's run on).
    """
    try:
        command = proc.cmdline()
        program = next((os.path.basename(w) for w in command[:3] if os.path.basename(w) in LIBRARY_WORKERS), None)
        if program is None:
            return ""
        main, forked = LIBRARY_WORKERS[program]
        if os.getpgid(proc.pid) == proc.pid:
            return main
        parent = proc.parent()
        return forked if parent is not None and parent.cmdline() == command else f"{forked} (orphaned)"
    except (psutil.Error, OSError):
        return ""


def role(proc: psutil.Process) -> str:
    """What an `rq worker` process is: "worker", "work-horse" or "scheduler" ("" if it is no RQ worker).

    Celery's and Dramatiq's processes: see library_role.

    All three have the same command line. A worker started by the course leads its own
    session; its horse leads a process group of its own (RQ calls setpgrp) inside the
    worker's session; the scheduler child (--with-scheduler) stays in the worker's group.
    A worker killed with -9 leaves both behind, re-parented: "(orphaned)" says so.
    """
    try:
        command = proc.cmdline()
        words = command[:3]  # [python, …/rq, worker, …] or [rq, worker, …]
        if not (any(os.path.basename(w) == "rq" for w in words) and "worker" in words):
            return ""
        pid, parent = proc.pid, proc.parent()
        pgid, sid = os.getpgid(pid), os.getsid(pid)
        under_worker = parent is not None and parent.cmdline() == command
    except (psutil.Error, OSError):
        return ""
    if pgid != pid:
        return "scheduler" if under_worker else "scheduler (orphaned)"
    if under_worker:
        return "work-horse"
    if sid != pid and parent is not None and parent.pid == 1:
        return "work-horse (orphaned)"
    return "worker"


def ps_rows(procs) -> list[dict]:
    """What `ps aux` shows for each process: USER PID %CPU %MEM STAT COMMAND (plus PPID, PGID)."""
    rows = []
    for proc in procs:
        try:
            with proc.oneshot():
                rows.append({
                    "user": proc.username(), "pid": proc.pid, "ppid": proc.ppid(),
                    "pgid": _pgid(proc.pid), "cpu": proc.cpu_percent(interval=None),
                    "mem": round(proc.memory_percent(), 1),
                    "stat": STAT_LETTERS.get(proc.status(), "?"),
                    "command": " ".join(proc.cmdline()) or f"[{proc.name()}]",
                })
        except psutil.NoSuchProcess:
            continue
    return rows


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def format_rows(rows: list[dict], width: int | None = None) -> str:
    """A `ps`-like text table of `ps_rows` output (lines cut at `width` characters, if given)."""
    lines = [f"{'USER':<8} {'PID':>7} {'PPID':>7} {'PGID':>7} {'%CPU':>5} {'%MEM':>5} STAT COMMAND"]
    for r in rows:
        line = (f"{r['user'][:8]:<8} {r['pid']:>7} {r['ppid']:>7} {r['pgid'] or '-':>7} "
                f"{r['cpu']:>5.1f} {r['mem']:>5.1f} {r['stat']:<4} {r['command']}")
        lines.append(line[:width] if width else line)
    return "\n".join(lines)


# Our children started with subprocess.Popen, by PID: gone() reaps them through their Popen, which keeps
# the exit status (Popen.returncode; -N for signal N). Reaped behind its back, a Popen would record 0.
_POPENS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def track(popen: subprocess.Popen) -> None:
    """Have gone() reap `popen`'s process through `popen`, so that its exit status is kept."""
    _POPENS[popen.pid] = popen


def handles(proc: psutil.Process, signum: int) -> bool:
    """Whether `proc` has installed a handler of its own for `signum` (the SigCgt mask in /proc/PID/status)."""
    try:
        with open(f"/proc/{proc.pid}/status") as status:
            mask = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(mask >> (signum - 1) & 1)


def gone(proc: psutil.Process) -> bool:
    """True once `proc` has exited. A zombie has exited too: only its parent's wait() is missing.

    If `proc` is our own child it is reaped before this returns (through its Popen, if track()ed), so that
    no zombie is left and no Popen.poll() afterwards still takes it for running.
    """
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return False
        if proc.ppid() == os.getpid():
            # Killed with threads (an RQ worker has some), the main thread shows as a zombie a moment
            # before the others have exited, and only then can it be reaped: wait for that moment.
            popen = _POPENS.get(proc.pid)
            if popen is not None and popen.returncode is None:
                popen.wait(timeout=1)
            else:
                proc.wait(timeout=1)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired, subprocess.TimeoutExpired, ChildProcessError):
        pass
    return True


def wait_gone(procs, timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` s for `procs` to exit; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if not gone(p)]
    return alive


def stop(procs, timeout: float = 5.0, sig: int = signal.SIGTERM) -> dict[int, str]:
    """Send `sig` (SIGTERM: please finish and exit) to each process; SIGKILL those still alive after `timeout` s.

    Returns {pid: "exited" | "killed"}. A stopped (SIGSTOP) process cannot handle
    SIGTERM until it runs again, so it gets SIGCONT too.
    """
    procs = [p for p in procs if p.pid != os.getpid()]
    for proc in procs:
        try:
            proc.send_signal(sig)
            proc.send_signal(signal.SIGCONT)
        except psutil.NoSuchProcess:
            pass
    alive = wait_gone(procs, timeout)
    outcome = {proc.pid: "exited" for proc in procs}
    for proc in alive:
        try:
            proc.kill()
            outcome[proc.pid] = "killed"
        except psutil.NoSuchProcess:
            pass
    wait_gone(alive, 2)
    return outcome


PORT_CLAIMS = Path(tempfile.gettempdir()) / f"ebookstore-ports-{os.getuid()}"


@contextlib.contextmanager
def interrupt_held():
    """Hold an Interrupt (SIGINT: Jupyter's Interrupt, Ctrl-C) back while the block runs; yields a list that is
    no longer empty if one came. For a step that must not be cut in two: a process forked but not yet recorded
    would run on, found by nobody who started it. Python delivers signals to the main thread only: elsewhere
    this holds nothing back (and nothing comes)."""
    came: list[int] = []
    # Elsewhere than the main thread, or with a handler Python cannot put back (installed from C): as it is.
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield came
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    try:
        yield came
    finally:
        signal.signal(signal.SIGINT, previous)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, claimed for this process (see claim_port).

    Chosen below the kernel's ephemeral range (ip_local_port_range), never in it: a port the kernel
    hands out by itself - to a Jupyter kernel binding its ZeroMQ ports, to any outgoing connection -
    could be taken by another program between our choice and our bind, seconds later.
    """
    ports = _below_ephemeral_range()
    for _ in range(200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", random.choice(ports) if ports else 0))  # 0: the kernel's choice
            except OSError:  # in use, or in TIME_WAIT
                continue
            port = sock.getsockname()[1]
        if claim_port(port, fresh=True):
            return port
    raise RuntimeError(f"no unclaimed free port found (claims in {PORT_CLAIMS})")


def _below_ephemeral_range() -> range:
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768  # Linux's default range is 32768-60999
    return range(max(10000, first - 12000), first)


def claim_port(port: int, fresh: bool = False) -> bool:
    """Claim `port` for this process while it lives: False if another live process holds the claim.

    `fresh`: False too if this process (or an ancestor) holds it: a port chosen anew must differ from every
    port already chosen (a state folder's Redis, web and SMTP ports are three calls of free_port in a row).

    Between choosing a free port and binding it, a process may wait for seconds (a notebook binds
    its web port cells later): two runs that choose in the same moment would otherwise take the same
    port. A claim held by a process that has exited is void; one held by an ancestor (a test run
    choosing ports for the notebooks it runs) passes to the claimant. Claims are files, one per
    port, written under a lock.
    """
    PORT_CLAIMS.mkdir(mode=0o700, exist_ok=True)
    me, path = owner_id(), PORT_CLAIMS / str(port)
    with open(PORT_CLAIMS / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            holder = path.read_text().strip()
        except OSError:
            holder = ""
        if holder and _alive(holder) and (fresh or (holder != me and holder not in _ancestors())):
            return False
        path.write_text(me)
        return True


def release_port(port: int) -> None:
    """Give up this process's claim on `port` (see claim_port)."""
    path = PORT_CLAIMS / str(port)
    with contextlib.suppress(OSError), open(PORT_CLAIMS / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.read_text().strip() == owner_id():
            path.unlink()


def _alive(owner: str) -> bool:
    try:
        return owner_id(psutil.Process(int(owner.split(":")[0]))) == owner
    except (psutil.Error, ValueError):
        return False


def _ancestors() -> set[str]:
    found = set()
    with contextlib.suppress(psutil.Error):
        for parent in psutil.Process().parents():
            found.add(owner_id(parent))
    return found


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate()` until it returns something truthy; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
