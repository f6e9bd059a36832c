"""The proctor's fork server: one process that has loaded the grader forks a child for each check graded.

    python -m ebookstore.course.forkserver FD    # FD: its socket

Started by the proctor on first use, or earlier by a notebook's environment cell (forkserver.start).

A fresh Python that imports rq, redis-py and the checks spends about 0.6 s of CPU before the first check
runs: more than most checks take. A child forked from a process that has them loaded starts in a few
milliseconds with the same modules, shared copy-on-write: the trick RQ's worker uses for each job's
work-horse, and Python's own multiprocessing "forkserver". Each child is what `python -m
ebookstore.course.proctor` would have been: a session of its own (`setsid`), the environment, working
folder, output file and report pipe the proctor hands it (the last two as file descriptors over the
socket, SCM_RIGHTS), and the learner's module imported only there, so nothing of one child reaches the next.

A forked child's /proc/PID/environ — what `ps e`, psutil and the course's run-tag searches read — is the
server's: fork copies it, and what the child sets lives in its own memory (the processes it starts get
that). So the child shows as process "forkserver"; the proctor finds it by PID and session, and its
children by the grading's run tag.

The server runs no learner code, holds no thread (a fork copies only the thread that calls it: a lock
another thread held would stay locked in the child), reaps its children and writes each one's exit status
on its report pipe. It exits when the proctor's end of the socket closes: the proctor stopped it, exited,
or was killed.
"""
from __future__ import annotations

import atexit
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback

from ebookstore.config import PROJECT_ROOT
from ebookstore.runtime import processes

NAME = "forkserver"  # its process name (EBOOKSTORE_PROCESS_NAME): it belongs to no notebook's or store's run
MAX_MESSAGE = 1 << 20  # a request: the child's arguments and environment, as JSON
STARTUP = 20.0  # seconds the server may take to answer its first request (Python started, the grader loaded)


class ForkServer:
    """The proctor's side: the server process, started on first use, and its socket."""

    def __init__(self, env: dict):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**env, processes.RUN_TAG: f"forkserver-{secrets.token_hex(3)}", processes.PROCESS_NAME: NAME,
               processes.OWNER: processes.owner_id(), "PYTHONUNBUFFERED": "1"}
        with theirs:
            self.process = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())], env=env,
                                            cwd=str(PROJECT_ROOT), pass_fds=(theirs.fileno(),), start_new_session=True,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # errors: stderr
        self.socket, self.lock, self.broken = mine, threading.Lock(), False
        self.socket.settimeout(STARTUP)

    def fork(self, args: list[str], env: dict, output_fd: int, report_fd: int) -> int:
        """A child running the proctor's child with `args`; its PID. Raises OSError if the server is gone."""
        with self.lock:  # one request, one answer: threads grading at once take turns
            if self.broken:
                raise ConnectionError("an earlier request was interrupted")
            try:
                socket.send_fds(self.socket, [json.dumps({"args": args, "env": env}).encode()], [output_fd, report_fd])
                answer = self.socket.recv(MAX_MESSAGE)
            except BaseException:  # an Interrupt between question and answer: the next answer would be this one's
                self.broken = True
                raise
        if not answer:
            raise ConnectionError("the fork server has exited")
        return json.loads(answer)["pid"]

    def stop(self) -> None:
        self.socket.close()  # the server reads the end of its socket and exits
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


_servers: dict[str, ForkServer] = {}
_retired: list[ForkServer] = []  # failed a request: asked for nothing more, stopped at exit (with their children)
_servers_lock = threading.Lock()


def _server(env: dict) -> tuple[str, ForkServer]:
    key = env.get("PYTHONPATH", "")  # read by Python at start-up: a server per value
    with _servers_lock:
        server = _servers.get(key)
        if server is None or server.process.poll() is not None:
            server = _servers[key] = ForkServer({**env, "PYTHONPATH": key} if key else env)
    return key, server


def start(env: dict) -> None:
    """Start this process's server for `env` now, unless it runs: it loads the grader while other cells run,
    and the first check need not wait for that (0.4 s). A notebook's environment cell calls it. If it cannot
    be started now, nothing is said: the first check tries again, and says why if it must."""
    try:
        _server(env)
    except OSError:
        pass


def fork(args: list[str], env: dict, output_fd: int, report_fd: int) -> int | None:
    """Fork a proctor child from this process's server (started now if need be); its PID, or None if it can't."""
    for _ in range(2):  # a server that died (killed with its state folder's processes, say) is started again
        key, server = _server(env)
        try:
            return server.fork(args, env, output_fd, report_fd)
        except BaseException as error:
            # Not stopped now: stopping a server SIGKILLs its children, the other checks being graded at once.
            with _servers_lock:
                if _servers.get(key) is server:
                    del _servers[key]
                _retired.append(server)
            if not isinstance(error, (OSError, ValueError, KeyError)):
                raise  # KeyboardInterrupt: the caller stops whatever the request started (by run tag)
    return None


@atexit.register
def stop_all() -> None:
    """Stop the fork servers this process started (also at its exit)."""
    with _servers_lock:
        servers = list(_servers.values()) + _retired
        _servers.clear()
        _retired.clear()
    for server in servers:
        server.stop()


# -- the server -----------------------------------------------------------------------------------
def serve(sock: socket.socket) -> None:
    from ebookstore.course import grading  # loaded once, here: what every child needs
    from ebookstore.course import forked_worker  # noqa: F401 - and what a check's forked worker runs (rq's CLI)
    wake_r, wake_w = os.pipe()  # a SIGCHLD writes a byte here (set_wakeup_fd): select wakes up and we reap
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    reports: dict[int, int] = {}  # child PID -> our copy of its report pipe, for its exit status
    while True:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        _reap(reports)
        if sock not in ready:
            continue
        data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
        if not data:  # the proctor closed its end, or exited: no child outlives the server
            _stop_children(reports)
            return
        request = json.loads(data)
        try:
            grading.CHECKS[request["args"][0]]  # the exercise's checks, loaded here for the next child too
        except Exception:
            pass  # the child will report it
        pid = os.fork()
        if pid == 0:
            _child(request, fds, close=(sock.fileno(), wake_r, wake_w, *reports.values()))  # others' pipes too:
            # a child holding another's report pipe would keep that one from ending when its child exits
        os.close(fds[0])
        reports[pid] = fds[1]
        try:
            sock.send(json.dumps({"pid": pid}).encode())
        except OSError:  # the proctor went away (an Interrupt) before it learnt the PID: nobody would stop it
            _stop_children(reports)
            return


def _stop_children(reports: dict[int, int]) -> None:
    """SIGKILL each child not yet reaped, and its session (each child leads one, once it has called setsid)."""
    for pid in reports:
        for kill in (os.kill, os.killpg):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass  # exited since, or not yet a session of its own


def _reap(reports: dict[int, int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = reports.pop(pid, None)
        if fd is not None:
            try:
                os.write(fd, (json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n").encode())
            except OSError:
                pass  # the proctor no longer reads (it stopped the child at the time limit)
            os.close(fd)


def _child(request: dict, fds: list[int], close: tuple[int, ...]) -> None:
    """In the forked child: become what `python -m ebookstore.course.proctor ARGS` would be; never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in close:
            os.close(fd)
        os.setsid()
        output, report = fds
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(PROJECT_ROOT)
        from ebookstore.course import grading
        exercise, folder, first, stop = request["args"]
        grading.report_exercise(exercise, folder, int(first), report, stop=int(stop))
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # what an exiting Python does: a Stack stops what it started
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
    # Out at once, without Python's clean-up: the server has nothing to flush, no thread, no learner code, and
    # its proctor (a notebook's kernel as it exits, `ebookstore check`) waits for it: tearing down the grader's
    # modules took 0.12-0.17 s of that wait.
    os._exit(0)
