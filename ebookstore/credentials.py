"""Secrets generated once per state folder: the Redis password, the dashboard password.

Each lives in a file only its owner can read (mode 0600), created with that mode
from the first byte, so there is no moment when another user could read it.
Nothing here puts a secret on a command line: `ps` shows every process's
command line to every user of the machine, while a process's environment and
a 0600 file are private to its owner.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

REDIS_PASSWORD_FILE = "redis-password"
DASHBOARD_PASSWORD_FILE = "dashboard-password"


def private_home(home: Path) -> Path:
    """Create the state folder readable by its owner only (0700): it holds buyers' emails, the queue, passwords."""
    home.mkdir(parents=True, exist_ok=True)
    if home.stat().st_uid == os.getuid() and home.stat().st_mode & 0o077:
        home.chmod(0o700)
    return home


def generated(path: Path, nbytes: int = 18) -> str:
    """The secret kept in `path`, generated (URL-safe text, file mode 0600) on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    private_home(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it a moment ago: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(nbytes))
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), replacing the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.replace(tmp, path)


def masked(url: str) -> str:
    """`url` with its password replaced by ***: safe to print, log or show."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
