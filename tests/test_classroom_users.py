"""A class on one server, for real: three Unix users, each with a clone and default settings, at once.

Runs only as root (it creates the users; CI runs as root). The users share one read-only virtual
environment made for the test, with the course's dependencies only: each runs the `ebookstore` of
their own clone (`python -m ebookstore.cli`, from the clone). Afterwards the users are removed.
"""
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from ebookstore.config import DEFAULT_REDIS_PORT, PROJECT_ROOT, user_port_offset
from ebookstore.runtime import processes

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="creates Unix users: runs only as root (CI does)")
USERS = 3


def shared_venv(folder: Path) -> Path:
    """A virtual environment everyone may read, with the course's dependencies (not the course itself)."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    packages = project["dependencies"] + project["optional-dependencies"]["embedded-redis"]
    uv = Path(sys.executable).parent / "uv"
    python = shutil.which("python3.11", path="/usr/bin:/usr/local/bin") or sys.executable
    if uv.exists():
        subprocess.run([uv, "venv", "--quiet", "--python", python, folder], check=True, timeout=120)
        subprocess.run([uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", folder / "bin" / "python", *packages],
                       check=True, timeout=300)
    else:
        subprocess.run([python, "-m", "venv", folder], check=True, timeout=120)
        subprocess.run([folder / "bin" / "python", "-m", "pip", "install", "--quiet", *packages], check=True,
                       timeout=600)
    return folder


def copy_tree(destination: Path) -> None:
    """The project's files as git knows them (tracked and new), like a fresh clone of this working copy."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=PROJECT_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


class Learner:
    def __init__(self, name: str, base: Path, venv: Path):
        self.name, self.home = name, base / name
        subprocess.run(["useradd", "--no-create-home", "--home-dir", str(self.home), "--shell", "/bin/sh", name],
                       check=True, timeout=30)
        entry = pwd.getpwnam(name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.clone = self.home / "course"
        self.clone.mkdir(parents=True)
        copy_tree(self.clone)
        subprocess.run(["chown", "-R", f"{self.uid}:{self.gid}", str(self.home)], check=True, timeout=60)
        self.home.chmod(0o700)
        self.env = {"HOME": str(self.home), "USER": name, "LANG": "C.UTF-8", "PYTHONPATH": str(self.clone),
                    "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "TMPDIR": str(self.home)}
        self.python = str(venv / "bin" / "python")

    def run(self, *args, timeout=120, code=None) -> subprocess.CompletedProcess:
        argv = [self.python, "-c", code] if code else [self.python, "-m", "ebookstore.cli", *args]
        return subprocess.run(argv, cwd=self.clone, env=self.env, user=self.uid, group=self.gid, extra_groups=[],
                              capture_output=True, text=True, timeout=timeout)

    def processes(self):
        return [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == self.uid]

    def course(self) -> list[str]:
        """Up, a purchase whose three emails arrive, the ex04 check on the solutions, down: what went wrong."""
        problems = []
        up = self.run("up")
        if up.returncode != 0:
            return [f"{self.name}: up failed: {up.stdout}{up.stderr}"]
        self.up_output = up.stdout
        bought = self.run("buy", "1", "3")
        if bought.returncode != 0:
            problems.append(f"{self.name}: buy failed: {bought.stderr}")
        else:
            purchase = json.loads(bought.stdout[bought.stdout.index("{"):])["id"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                box = json.loads(self.run("outbox", "--json").stdout)
                if len([m for m in box if m["key"].startswith(f"purchase-{purchase}-")]) == 3:
                    break
                time.sleep(0.5)
            else:
                problems.append(f"{self.name}: the purchase's 3 emails did not arrive within 30 s")
        checked = self.run("check", "ex04", "--solutions", timeout=180)
        if checked.returncode != 0:
            problems.append(f"{self.name}: check ex04 --solutions: {checked.stdout}{checked.stderr}")
        self.running_while_up = [p.pid for p in self.processes()]
        return problems

    def down(self) -> subprocess.CompletedProcess:
        return self.run("down")


@pytest.mark.timeout(300)  # three learners' `up` and check at once: 50 s idle, 130 s seen beside the parallel tests
def test_three_learners_on_one_server():
    base = Path(tempfile.mkdtemp(prefix="ebookstore-classroom-", dir="/tmp"))  # pytest's tmp is root's only
    base.chmod(0o755)
    venv = shared_venv(base / "venv")
    subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
    tag = secrets.token_hex(2)
    learners = []
    try:
        for i in range(USERS):
            learners.append(Learner(f"ebs{tag}l{i}", base, venv))
        with ThreadPoolExecutor(USERS) as pool:
            problems = [p for found in pool.map(Learner.course, learners) for p in found]
        assert problems == []

        # Ports: each learner's own, by default, all different; each Redis is its owner's.
        ports = {l.name: DEFAULT_REDIS_PORT + user_port_offset(l.uid) for l in learners}
        assert len(set(ports.values())) == USERS
        for learner in learners:
            assert processes.listener_uid(ports[learner.name]) == learner.uid
            assert str(ports[learner.name]) in learner.up_output, "up shows the learner's actual port"

        for me, other in zip(learners, learners[1:] + learners[:1]):
            # Another learner's Redis refuses a client without their password.
            probe = me.run(code=("import redis\n"
                                 f"try:\n    redis.Redis(port={ports[other.name]}, socket_timeout=3).ping()\n"
                                 "    print('answered')\n"
                                 "except redis.exceptions.RedisError as error:\n"
                                 "    print(type(error).__name__, error)\n"))
            assert "answered" not in probe.stdout and ("NOAUTH" in probe.stdout or "Authentication" in probe.stdout), \
                probe.stdout + probe.stderr
            # Another learner's state folder cannot be read.
            peek = me.run(code=f"import os\ntry:\n    os.listdir({str(other.clone / 'var')!r})\n    print('read')\n"
                               "except PermissionError:\n    print('refused')\n")
            assert peek.stdout.strip() == "refused", peek.stdout + peek.stderr
            # Another learner's port: killport says whose it is (on stderr: it failed), and touches nothing.
            killport = me.run("killport", str(ports[other.name]))
            assert killport.returncode == 1 and other.name in killport.stderr, killport.stdout + killport.stderr

        for learner in learners:
            down = learner.down()
            assert down.returncode == 0, down.stderr
            assert processes.wait_gone(learner.processes(), 10) == [], f"{learner.name} left processes running"
            assert (learner.clone / "var").stat().st_mode & 0o077 == 0, "the state folder is private"
    finally:
        for learner in learners:
            processes.stop(learner.processes(), timeout=3)
            subprocess.run(["userdel", learner.name], capture_output=True, timeout=30)
        shutil.rmtree(base, ignore_errors=True)
    assert not [n for n in (l.name for l in learners) if _exists(n)], "the users are removed"


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
