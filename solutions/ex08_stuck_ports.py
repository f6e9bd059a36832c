"""Exercise 08 — stuck ports: who listens on a port, and a `killport` shell function.

Notebook: notebooks/08_stuck_ports.ipynb · check: check("ex08") or `ebookstore check ex08`
"""
import psutil


def listener_pid(port: int) -> int | None:
    """The PID of the process LISTENING on TCP `port`, or None.

    Only the listener: processes merely connected to that port (a worker
    connected to Redis) are not it.
    """
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
            return conn.pid
    return None


def killport_function() -> str:
    """The text of a bash function `killport PORT` for your ~/.bashrc.

    It stops the process listening on TCP port PORT — only the listener,
    never its connected clients — with SIGTERM, then SIGKILL if it is still
    there after about 2 s. It prints what it stopped. With no listener it
    prints a message to stderr and returns 1.
    """
    return r'''
killport() {
    local port="$1" pids
    if [ -z "$port" ]; then echo "usage: killport PORT" >&2; return 2; fi
    # -sTCP:LISTEN: the listener only; plain `lsof -ti :PORT` lists connected clients too.
    pids=$(lsof -t -iTCP:"$port" -sTCP:LISTEN 2>/dev/null)
    if [ -z "$pids" ]; then echo "nothing listens on port $port" >&2; return 1; fi
    echo "stopping PID(s) $pids listening on port $port"
    kill $pids                                     # SIGTERM: the polite request
    for _ in 1 2 3 4; do                           # give it about 2 s to exit
        sleep 0.5
        pids=$(lsof -t -iTCP:"$port" -sTCP:LISTEN 2>/dev/null)
        [ -z "$pids" ] && return 0
    done
    kill -9 $pids                                  # still there after 2 s: SIGKILL
}
'''
