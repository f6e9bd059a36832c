"""Throwaway processes to practise on: each state ps shows (S, R, T, Z), a listener and its client,
and a process that writes down every SIGTERM it gets (and may ignore it).

Used by notebooks 06 and 08, the checks of exercises 02, 06, 07 and 08, and the tests.

Each one carries `marker` in its command line (a zombie, which has none left,
in its name), so `ps aux | grep MARKER` finds exactly these.
"""
from __future__ import annotations

import signal
import sys

import psutil

from ebookstore.runtime.processes import port_open, wait_until
from ebookstore.runtime.stack import Stack

SLEEP = "import time, sys; time.sleep(float(sys.argv[1]))"
SPIN = ("import time, sys\n"
        "deadline = time.monotonic() + float(sys.argv[1])\n"
        "while time.monotonic() < deadline: pass\n")
# The parent forks a child that renames itself (its "comm") and exits at once. The parent never
# calls wait(), so the child stays a zombie until the parent dies and PID 1 reaps it.
ZOMBIE = ("import os, sys, time\n"
          "pid = os.fork()\n"
          "if pid == 0:\n"
          "    open('/proc/self/comm', 'w').write(sys.argv[2][:15])\n"
          "    os._exit(0)\n"
          "time.sleep(float(sys.argv[1]))\n")


def sleeper(stack: Stack, marker: str, seconds: float = 60) -> psutil.Process:
    """A process that sleeps: state S."""
    return stack.start(f"sleeper-{marker}", [sys.executable, "-c", SLEEP, str(seconds), marker])


def spinner(stack: Stack, marker: str, seconds: float = 30) -> psutil.Process:
    """A process that keeps the CPU busy: state R."""
    return stack.start(f"spinner-{marker}", [sys.executable, "-c", SPIN, str(seconds), marker])


def stopped(stack: Stack, marker: str) -> psutil.Process:
    """A sleeper stopped with SIGSTOP: state T, until SIGCONT."""
    proc = stack.start(f"stopped-{marker}", [sys.executable, "-c", SLEEP, "60", marker])
    proc.send_signal(signal.SIGSTOP)
    wait_until(lambda: proc.status() == psutil.STATUS_STOPPED, 5, what="SIGSTOP to take effect")
    return proc


def zombie(stack: Stack, marker: str, seconds: float = 60) -> tuple[psutil.Process, psutil.Process]:
    """(parent, zombie): a child that has exited and that its parent never waited for: state Z."""
    parent = stack.start(f"zombie-parent-{marker}", [sys.executable, "-c", ZOMBIE, str(seconds), marker])
    child = wait_until(lambda: next(iter(parent.children()), None), 5, what="the child")
    wait_until(lambda: child.status() == psutil.STATUS_ZOMBIE, 5, what="the child to exit")
    return parent, child


LISTEN = ("import socket, sys, time\n"
          "server = socket.socket()\n"
          "server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no owner\n"
          "server.bind(('127.0.0.1', int(sys.argv[1])))\n"
          "server.listen()\n"
          "clients = []\n"
          "while True:\n"
          "    clients.append(server.accept()[0])  # keep every connection open\n")
CONNECT = ("import socket, sys, time\n"
           "connection = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
           "time.sleep(600)\n")


def listener(stack: Stack, port: int, marker: str = "listener") -> psutil.Process:
    """A TCP server on 127.0.0.1:`port` that accepts connections and never lets go.

    It never answers either: a client without a read timeout waits on it forever.
    """
    return stack.start(f"listener-{marker}", [sys.executable, "-c", LISTEN, str(port), marker],
                       ready=lambda: port_open(port), port=port)


def client(stack: Stack, port: int, marker: str = "client") -> psutil.Process:
    """A process connected to `port` (as a worker is connected to Redis), idle."""
    proc = stack.start(f"client-{marker}", [sys.executable, "-c", CONNECT, str(port), marker])
    wait_until(lambda: any(c.raddr and c.raddr.port == port for c in proc.net_connections("tcp")), 5,
               what="the client to connect")
    return proc


# Notes each SIGTERM with the time it came (time.monotonic(): one clock for every process of the
# machine), then exits — or, if told to, ignores it, so that only SIGKILL ends it. With a port it
# also listens there, like a server that holds a port.
SIGNAL_LOGGER = ("import signal, socket, sys, time\n"
                 "port, stubborn = int(sys.argv[1]), sys.argv[2] == 'ignore'\n"
                 "def on_term(signum, frame):\n"
                 "    print(f'SIGTERM at {time.monotonic():.3f}', flush=True)\n"
                 "    if not stubborn:\n"
                 "        sys.exit(0)\n"
                 "signal.signal(signal.SIGTERM, on_term)\n"
                 "clients = []\n"
                 "if port:\n"
                 "    server = socket.socket()\n"
                 "    server.bind(('127.0.0.1', port))\n"
                 "    server.listen()\n"
                 "print('ready', flush=True)\n"
                 "while True:\n"
                 "    if port:\n"
                 "        clients.append(server.accept()[0])\n"
                 "    else:\n"
                 "        time.sleep(60)\n")


def signal_logger(stack: Stack, marker: str, *, stubborn: bool = False, port: int | None = None) -> psutil.Process:
    """A process that prints "SIGTERM at <monotonic time>" for each SIGTERM it gets; see `sigterms`.

    It exits on SIGTERM, or with `stubborn` ignores it (only SIGKILL stops it then). With
    `port` it listens on 127.0.0.1:`port` and keeps every connection open.
    """
    name = f"signals-{marker}"
    argv = [sys.executable, "-c", SIGNAL_LOGGER, str(port or 0), "ignore" if stubborn else "exit", marker]
    return stack.start(name, argv, port=port, ready=lambda: "ready" in stack.log(name))


def sigterms(stack: Stack, marker: str) -> list[float]:
    """When (time.monotonic()) the signal_logger `marker` got each SIGTERM so far."""
    lines = stack.log(f"signals-{marker}", 50).splitlines()
    return [float(line.split()[-1]) for line in lines if line.startswith("SIGTERM at ")]
