"""Checks of exercise 08: the listener of a port, and a killport shell function that spares clients."""
import subprocess

from ebookstore.course import specimens
from ebookstore.course.checks.common import Fail
from ebookstore.runtime import processes


def finds_the_listener_only(ctx):
    """listener_pid: the listening process, not a connected client"""
    listener_pid = ctx.learner("listener_pid")
    port = processes.free_port()
    if listener_pid(port) is not None:
        raise Fail(f"nothing listens on port {port}: return None")
    server = specimens.listener(ctx.stack, port)
    client = specimens.client(ctx.stack, port)
    got = listener_pid(port)
    if got == client.pid:
        raise Fail("you returned the client's PID: a connected process has the port too, as the remote "
                   "end; keep only the connection whose status is LISTEN")
    if got != server.pid:
        raise Fail(f"PID {server.pid} listens on port {port}; you returned {got!r}")


def killport_spares_clients(ctx):
    """killport PORT stops the listener; its connected client survives"""
    function = ctx.learner("killport_function")()
    if not isinstance(function, str) or "killport" not in function:
        raise Fail("return the text of a bash function named killport")
    port = processes.free_port()
    server = specimens.listener(ctx.stack, port)
    client = specimens.client(ctx.stack, port)
    run = subprocess.run(["bash", "-c", f"{function}\nkillport {port}"], capture_output=True, text=True, timeout=5)
    if not processes.gone(server):
        raise Fail(f"the listener (PID {server.pid}) still runs after `killport {port}`; stderr: {run.stderr.strip()}")
    if processes.gone(client):
        raise Fail("killport also killed a client connected to the port: `lsof -ti :PORT` lists clients too; "
                   "ask for the listener only (-sTCP:LISTEN)")
    if run.returncode != 0:
        raise Fail(f"killport returned {run.returncode} after stopping the listener: return 0")
    again = subprocess.run(["bash", "-c", f"{function}\nkillport {port}"], capture_output=True, text=True, timeout=5)
    if again.returncode == 0 or not again.stderr.strip():
        raise Fail("with nothing listening, killport should say so on stderr and return 1")


CHECKS = [finds_the_listener_only, killport_spares_clients]
