"""Exactly one email per key: claim it, send it, record it.

Queues deliver a job *at least* once, and sometimes twice at the same time: a retry
starts while the work-horse of a killed worker still runs the first copy, or the web
app and the relay both enqueued it. The ledger (the deliveries table) alone stops a
second run that comes *after* the first; two copies running *at once* both look, both
find nothing, both send. So before sending, a copy takes the email's **claim**, a row
in the claims table written in a SQLite transaction (BEGIN IMMEDIATE: one writer at a
time), which only one holder can have:

- the email is in the ledger: nothing to do;
- someone else holds a live claim: wait for them (they are sending it right now), then look again;
- otherwise: the claim is ours, with a new fencing token and a lease (an expiry time).

A holder's claim ends when it records the email in the ledger (same transaction), when
sending fails (released, so a retry can send at once), when its process is gone (it was
killed: this machine can see that at once), or when its lease runs out (a holder that
hangs, or one on another machine whose process we cannot see). The fencing token keeps a
holder whose lease ran out from releasing the claim of the one after it.

What no claim can do: make SMTP exactly-once. Killed after the mail server accepted an
email and before the ledger row is written, a sender will send that email again. The
store makes that window as small as it can: the row is written the moment the server
answers, before the SMTP connection is even closed (mail.deliver's `on_sent`), and, in a
work-horse, each email is claimed, sent and recorded by a short-lived process of its own
(forked, in its own process group): a crash of the job — a killed worker or work-horse —
cannot split a send from its record; only a crash of that small sender in the
millisecond between "accepted" and the commit can (or a power cut). The key travels in
the X-Ebookstore-Key header so the receiving side can drop such a duplicate.

Why SQLite and not a lock in Redis: the claim sits in the same database and the same
transaction as the ledger it guards, a Redis restart cannot lose it, and the store
already trusts that database with its purchases.
"""
from __future__ import annotations

import functools
import os
import socket
import sys
import threading
import time
import traceback
from contextlib import closing
from email.message import EmailMessage

import psutil
from rq import get_current_job

from . import mail, store
from .config import Settings

DELIVERED = "delivered"
BUSY = "busy"
LEASE_MARGIN = 30.0  # seconds a send may take beyond the mail delay (SMTP's timeout is 10 s)


class ClaimBusy(RuntimeError):
    """Another live holder kept the claim longer than its lease: try again later (the job's retry)."""


@functools.lru_cache(maxsize=4)
def _holder_for(pid: int) -> str:
    return f"{socket.gethostname()}/{pid}/{psutil.Process(pid).create_time():.3f}"


def me() -> str:
    """This process as a claim holder: host/pid/start time (a pid alone may be reused)."""
    return _holder_for(os.getpid())  # per pid: a forked work-horse is a holder of its own


def holder_alive(holder: str) -> bool:
    """False if `holder` ran on this machine and has exited (killed, crashed); True otherwise."""
    host, pid, started = holder.split("/")
    if host != socket.gethostname():
        return True  # cannot see it from here: its lease decides
    try:
        proc = psutil.Process(int(pid))
        return f"{proc.create_time():.3f}" == started and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def claim(conn, key: str, lease: float) -> int | str:
    """Take the claim on `key`: a fencing token, or DELIVERED (in the ledger) or BUSY (someone sends it)."""
    now = time.time()
    with store.transaction(conn):
        if conn.execute("SELECT 1 FROM deliveries WHERE key = ?", (key,)).fetchone():
            return DELIVERED
        row = conn.execute("SELECT holder, token, expires_at FROM claims WHERE key = ?", (key,)).fetchone()
        if row and row["holder"] != me() and row["expires_at"] > now and holder_alive(row["holder"]):
            return BUSY
        token = row["token"] + 1 if row else 1
        conn.execute("INSERT OR REPLACE INTO claims (key, holder, token, expires_at) VALUES (?, ?, ?, ?)",
                     (key, me(), token, now + lease))
    return token


def record(conn, key: str, token: int) -> None:
    """The email is sent: write it into the ledger and end our claim, in one transaction."""
    with store.transaction(conn):
        conn.execute("INSERT OR IGNORE INTO deliveries (key, delivered_at) VALUES (?, ?)", (key, store.now_iso()))
        conn.execute("DELETE FROM claims WHERE key = ? AND token = ?", (key, token))


def release(conn, key: str, token: int) -> None:
    """Sending failed: give the claim up so that the next attempt need not wait for the lease."""
    with store.transaction(conn):
        conn.execute("DELETE FROM claims WHERE key = ? AND token = ?", (key, token))


def deliver_once(conn, message: EmailMessage, settings: Settings, poll: float = 0.05) -> bool:
    """Send `message` unless its key is in the ledger; True if this call sent it.

    Waits while another live holder sends it (at most one lease), then raises ClaimBusy.
    In an RQ work-horse the claim, the send and the record happen in a forked sender (see above).
    """
    if _in_work_horse():
        return _deliver_in_sender(message, settings, poll)
    return _claim_send_record(conn, message, settings, poll)


def _claim_send_record(conn, message: EmailMessage, settings: Settings, poll: float) -> bool:
    key = message["X-Ebookstore-Key"]
    lease = settings.mail_delay + LEASE_MARGIN
    deadline = time.monotonic() + lease
    while (token := claim(conn, key, lease)) == BUSY:
        if time.monotonic() > deadline:
            raise ClaimBusy(f"{key}: another worker has been sending it for over {lease:g} s")
        time.sleep(poll)
    if token == DELIVERED:
        return False
    try:
        mail.deliver(message, settings, on_sent=lambda: record(conn, key, token))
    except BaseException:
        if not conn.execute("SELECT 1 FROM deliveries WHERE key = ?", (key,)).fetchone():
            release(conn, key, token)
        raise
    return True


def _in_work_horse() -> bool:
    # Fork only a single-threaded process that runs an RQ job (a forking worker's horse):
    # forking a threaded process (the web app, a notebook kernel) is not safe.
    return hasattr(os, "fork") and threading.active_count() == 1 and get_current_job() is not None


SENT, SKIPPED, BUSY_EXIT = 0, 3, 4  # the sender's exit statuses; anything else: it failed (see the log)


def _deliver_in_sender(message: EmailMessage, settings: Settings, poll: float) -> bool:
    pid = os.fork()
    if pid == 0:  # the sender: its own process group, its own database connection
        status = 1
        try:
            os.setpgrp()
            with closing(store.connect(settings.database_path)) as conn:
                status = SENT if _claim_send_record(conn, message, settings, poll) else SKIPPED
        except ClaimBusy:
            status = BUSY_EXIT
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code == BUSY_EXIT:
        raise ClaimBusy(f"{message['X-Ebookstore-Key']}: another worker kept sending it")
    if code not in (SENT, SKIPPED):
        raise RuntimeError(f"sending {message['X-Ebookstore-Key']} failed (sender exit status {code}; see the log)")
    return code == SENT
