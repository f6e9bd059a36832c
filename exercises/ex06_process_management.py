"""Exercise 06 — process management: `ps aux | grep PATTERN`, in Python, with psutil.

Notebook: notebooks/06_process_management.ipynb · check: check("ex06") or `ebookstore check ex06`
"""
import os
import re

import psutil


def state_name(stat: str) -> str:
    """The name of a process state from the first letter of ps's STAT column.

    "R" → "running", "S" → "sleeping", "D" → "uninterruptible sleep", "T" → "stopped",
    "Z" → "zombie" (also "Ss", "R+", "Sl", "S<", "RN": only the first letter counts).
    """
    raise NotImplementedError  # your code here


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
    raise NotImplementedError  # your code here
