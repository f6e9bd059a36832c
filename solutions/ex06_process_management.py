"""Exercise 06 — process management: `ps aux | grep PATTERN`, in Python, with psutil.

Notebook: notebooks/06_process_management.ipynb · check: check("ex06") or `ebookstore check ex06`
"""
import os
import re

import psutil

_STATES = {  # ps STAT letter -> meaning
    "R": "running", "S": "sleeping", "D": "uninterruptible sleep", "T": "stopped",
    "t": "stopped by debugger", "Z": "zombie", "I": "idle", "X": "dead",
}


def state_name(stat: str) -> str:
    """The name of a process state from the first letter of ps's STAT column.

    "R" → "running", "S" → "sleeping", "D" → "uninterruptible sleep", "T" → "stopped",
    "Z" → "zombie" (also "Ss", "R+", "Sl", "S<", "RN": only the first letter counts).
    """
    return _STATES[stat[0]]


def list_processes(pattern: str) -> list[dict]:
    """Like `ps aux | grep PATTERN`, without grep finding itself.

    Return one dict per process whose full command line matches the regular
    expression `pattern` (a zombie has no command line left: match its name),
    leaving out the process that calls this function:
    {"pid": int, "cpu": float (%CPU, measured over a short interval),
     "mem": float (%MEM), "stat": str (the STAT letter, as ps shows it),
     "command": str (the full command line)}.
    Processes come and go while you look: one that ends meanwhile is left
    out, without an error (psutil raises NoSuchProcess for it).
    """
    regex, me = re.compile(pattern), os.getpid()
    letters = {psutil.STATUS_RUNNING: "R", psutil.STATUS_SLEEPING: "S", psutil.STATUS_DISK_SLEEP: "D",
               psutil.STATUS_STOPPED: "T", psutil.STATUS_TRACING_STOP: "t", psutil.STATUS_ZOMBIE: "Z",
               psutil.STATUS_IDLE: "I", psutil.STATUS_DEAD: "X"}
    found = []
    for proc in psutil.process_iter():
        try:
            command = " ".join(proc.cmdline()) or proc.name()
            if proc.pid != me and regex.search(command):
                proc.cpu_percent(None)  # the first call only starts the measurement
                found.append((proc, command))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            if proc.pid != me and _zombie_matches(proc, regex):
                found.append((proc, proc.name()))
    psutil.cpu_percent(0.2)  # let time pass: %CPU is CPU time over wall time
    rows = []
    for proc, command in found:
        try:
            rows.append({"pid": proc.pid, "cpu": proc.cpu_percent(None), "mem": proc.memory_percent(),
                         "stat": letters.get(proc.status(), "?"), "command": command})
        except psutil.NoSuchProcess:
            continue
    return rows


def _zombie_matches(proc, regex) -> bool:
    # A zombie has no command line any more, only its name.
    try:
        return proc.status() == psutil.STATUS_ZOMBIE and bool(regex.search(proc.name()))
    except psutil.Error:
        return False
