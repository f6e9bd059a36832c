"""Exercise 08 — stuck ports: who listens on a port, and a `killport` shell function.

Notebook: notebooks/08_stuck_ports.ipynb · check: check("ex08") or `ebookstore check ex08`
"""
import psutil


def listener_pid(port: int) -> int | None:
    """The PID of the process LISTENING on TCP `port`, or None.

    Only the listener: processes merely connected to that port (a worker
    connected to Redis) are not it.
    """
    raise NotImplementedError  # your code here


def killport_function() -> str:
    """The text of a bash function `killport PORT` for your ~/.bashrc.

    It stops the process listening on TCP port PORT — only the listener,
    never its connected clients — with SIGTERM, then SIGKILL if it is still
    there after about 2 s. It prints what it stopped. With no listener it
    prints a message to stderr and returns 1.
    """
    raise NotImplementedError  # your code here
