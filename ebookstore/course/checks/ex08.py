"""Checks of exercise 08: the listener of a port, and a killport shell function that spares clients.

The listeners here write down each SIGTERM they get, so the checks see the order
of the signals: one exits on SIGTERM, the other ignores it and must be escalated
to SIGKILL. A client stays connected to the port throughout: it is the easy
mistake, since `lsof -ti :PORT` lists it too. A listener on IPv6 only (::1) is a listener
too: an answer that looks at IPv4 alone (kind="tcp4", `lsof -i4`) misses it.
"""
import subprocess
import sys
import time

from ebookstore.course import specimens
from ebookstore.course.checks.common import Fail, short
from ebookstore.runtime import processes
from ebookstore.runtime.processes import wait_until

# A server on IPv6 only (::1, a port the kernel picks): it prints the port, then exits on SIGTERM.
LISTEN6 = ("import socket\n"
           "server = socket.socket(socket.AF_INET6)\n"
           "server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n"
           "server.bind(('::1', 0))\n"
           "server.listen()\n"
           "print('port', server.getsockname()[1], flush=True)\n"
           "clients = []\n"
           "while True:\n"
           "    clients.append(server.accept()[0])\n")


def _ipv6_listener(ctx, marker):
    """(process, port): a listener on [::1] only."""
    name = f"listener6-{marker}"
    proc = ctx.stack.start(name, [sys.executable, "-c", LISTEN6, marker],
                           ready=lambda: ctx.stack.log(name).startswith("port "))
    port = int(ctx.stack.log(name).split()[1])
    wait_until(lambda: any(c.laddr.port == port and c.status == "LISTEN" for c in proc.net_connections("tcp")),
               max(3.0, ctx.seconds_left(8)), what="the IPv6 listener")
    return proc, port


def _killport(function: str, port: int, timeout: float = 6) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["bash", "-c", f"{function}\nkillport {port}"], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail(f"`killport {port}` still ran after {timeout:g} s: give SIGTERM about 2 s, then SIGKILL, "
                   "then return") from None


def _function(ctx) -> str:
    function = ctx.learner("killport_function")()
    if not isinstance(function, str) or "killport" not in function:
        raise Fail("return the text of a bash function named killport")
    return function


def _own_port_of_a_client(ctx, port: int, client, server) -> int:
    """The port at the client's end of its connection to `port`: one no other process's connection names.

    A busy machine keeps thousands of closed connections (TIME_WAIT, no PID) whose ports come back as new
    clients' ports; an answer that returns the first connection naming the port could return such a one's
    PID, None, and pass for right. So a port that one names is traded for a new client's (five tries)."""
    for attempt in range(5):
        own = next(c.laddr.port for c in client.net_connections("tcp") if c.raddr and c.raddr.port == port)
        strangers = [c for c in processes.psutil.net_connections("tcp") if c.pid not in (client.pid, server.pid)
                     and own in (c.laddr and c.laddr.port, c.raddr and c.raddr.port)]
        if not strangers:
            break
        client = specimens.client(ctx.stack, port, marker=f"again-{attempt}")
    return own


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
    # The client's own end of its connection is a port too, one that nobody listens on.
    own = _own_port_of_a_client(ctx, port, client, server)
    got = listener_pid(own)
    if got is not None:
        who = "the client's PID" if got == client.pid else "the server's PID" if got == server.pid else repr(got)
        raise Fail(f"nothing listens on port {own}, the client's own end of its connection, yet you returned {who}: "
                   "a port that appears in a connection is not a listening port. Keep only the connection whose "
                   "status is LISTEN")
    server6, port6 = _ipv6_listener(ctx, "finds")
    got = listener_pid(port6)
    if got != server6.pid:
        raise Fail(f"PID {server6.pid} listens on port {port6} on IPv6 (::1) only, and you returned {got!r}: "
                   "look at every TCP listener, IPv4 and IPv6 (psutil's kind 'tcp', not 'tcp4')")


def killport_spares_clients(ctx):
    """killport PORT stops the listener with SIGTERM; its connected client survives"""
    function = _function(ctx)
    port = processes.free_port()
    server = specimens.signal_logger(ctx.stack, "polite-listener", port=port)
    client = specimens.client(ctx.stack, port)
    run = _killport(function, port)
    if processes.wait_gone([server], 0.5):  # a signal takes a moment to land
        raise Fail(f"the listener (PID {server.pid}) still runs after `killport {port}`"
                   + (f"; killport said: {short(run.stderr, 100)}" if run.stderr.strip() else ""))
    if processes.gone(client):
        raise Fail("killport also killed a client connected to the port: `lsof -ti :PORT` lists clients too; "
                   "ask for the listener only (-sTCP:LISTEN)")
    if not specimens.sigterms(ctx.stack, "polite-listener"):
        raise Fail("killport killed the listener without sending SIGTERM first: a server that gets SIGTERM can "
                   "finish its requests and exit cleanly; SIGKILL (kill -9) is for one that does not")
    if run.returncode != 0:
        raise Fail(f"killport returned {run.returncode} after stopping the listener: return 0")
    if str(server.pid) not in run.stdout:
        raise Fail(f"killport stopped PID {server.pid} without saying so: print (on stdout) what it stopped, "
                   "its PID at least, so that you know whom you killed")
    again = _killport(function, port)
    if again.returncode != 1 or not again.stderr.strip():
        said = "said nothing on stderr" if not again.stderr.strip() else f"returned {again.returncode}"
        raise Fail(f"with nothing listening, killport {said}: say so on stderr and return 1")
    server6, port6 = _ipv6_listener(ctx, "killport")
    _killport(function, port6)
    if processes.wait_gone([server6], 0.5):
        raise Fail(f"a listener on IPv6 only ([::1]:{port6}) still runs after `killport {port6}`: ask for "
                   "every TCP listener of the port, IPv4 and IPv6 (lsof -iTCP:PORT, not -i4)")


def killport_escalates(ctx):
    """killport escalates to SIGKILL about 2 s after SIGTERM, for a listener that ignores it"""
    function = _function(ctx)
    port = processes.free_port()
    server = specimens.signal_logger(ctx.stack, "stubborn-listener", stubborn=True, port=port)
    run = _killport(function, port)
    finished = time.monotonic()
    terms = specimens.sigterms(ctx.stack, "stubborn-listener")
    if processes.wait_gone([server], 0.5):  # a signal takes a moment to land
        raise Fail(f"a listener that ignores SIGTERM still runs after `killport {port}` returned: when SIGTERM "
                   "has not worked after about 2 s, escalate to SIGKILL (kill -9)")
    if not terms:
        raise Fail("killport killed the listener without sending SIGTERM first: SIGTERM, then SIGKILL only if "
                   "it is still there about 2 s later")
    if finished - terms[0] < 1.0:
        raise Fail(f"SIGKILL came {max(0.0, finished - terms[0]):.1f} s after SIGTERM: give the listener about 2 s "
                   "to finish and exit before you escalate")
    if run.returncode not in (0, None):
        raise Fail(f"killport returned {run.returncode} after stopping the listener: return 0")


CHECKS = [finds_the_listener_only, killport_spares_clients, killport_escalates]
