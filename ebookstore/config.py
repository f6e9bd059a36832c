"""Settings of the store and its processes, read from environment variables.

Every process of the stack (web, worker, cron, mail catcher) reads the same
variables, so a `Settings` object turns into an environment (`to_env`) that the
process starter hands to its children. That is also how workers scale out:
point `REDIS_URL` at another machine's Redis and start workers there.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from . import credentials

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent

# Not 6379 and 5000: a learner's own Redis or Flask app may already use those.
DEFAULT_REDIS_PORT = 16379
DEFAULT_WEB_PORT = 8808
DEFAULT_SMTP_PORT = 8025
DEFAULT_WORKERS = 2  # workers `ebookstore up` runs: one may die while the other carries on
# Who runs the store's jobs (EBOOKSTORE_QUEUE_BACKEND; see backends/): RQ by default.
QUEUE_BACKENDS = ("rq", "celery", "dramatiq", "inline")


def queue_backend(value: str | None) -> str:
    """The queue backend `value` names ("" or None: rq); ValueError naming the known ones if it is none of them."""
    name = (value or "rq").strip().lower()
    if name not in QUEUE_BACKENDS:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:39] + "…"  # never echo a huge value whole
        raise ValueError(f"unknown queue backend {shown}; known backends: {', '.join(QUEUE_BACKENDS)}")
    return name


def user_port_offset(uid: int | None = None) -> int:
    """How far this Unix user's default ports lie from the course's: 0 for root, 10 × (1 + uid mod 498) else.

    So on a class server every learner has ports of their own (uid 1000: 16429, 8858, 8075) without
    setting anything. The three services' ports never meet (their bases differ by amounts that are
    not multiples of 10), and two users collide only if their uids are equal modulo 498.
    """
    uid = os.getuid() if uid is None else uid
    return 0 if uid == 0 else 10 * (1 + uid % 498)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where the store keeps its data and how its processes find each other."""

    home: Path
    redis_port: int = DEFAULT_REDIS_PORT
    web_port: int = DEFAULT_WEB_PORT
    smtp_port: int = DEFAULT_SMTP_PORT
    external_redis_url: str | None = None  # REDIS_URL: use that Redis, start none
    database: Path | None = None
    smtp_url: str | None = None  # deliver by SMTP instead of into the Maildir
    mail_delay: float = 0.0  # seconds per email: a slow mail provider
    dashboard_user: str | None = None
    dashboard_password: str | None = None
    solutions: bool = False
    inline_emails: bool = False  # Chapter III's way: the web app sends the emails itself (for comparison)
    workers: int = DEFAULT_WORKERS  # EBOOKSTORE_WORKERS: how many workers the supervisor keeps running
    queue_backend: str = "rq"  # EBOOKSTORE_QUEUE_BACKEND: rq, celery, dramatiq or inline (see backends/)

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("EBOOKSTORE_HOME") or PROJECT_ROOT / "var").resolve()
        values = dict(
            home=home,
            redis_port=int(env.get("EBOOKSTORE_REDIS_PORT") or DEFAULT_REDIS_PORT + user_port_offset()),
            web_port=int(env.get("EBOOKSTORE_WEB_PORT") or DEFAULT_WEB_PORT + user_port_offset()),
            smtp_port=int(env.get("EBOOKSTORE_SMTP_PORT") or DEFAULT_SMTP_PORT + user_port_offset()),
            external_redis_url=env.get("REDIS_URL") or None,
            database=Path(env["EBOOKSTORE_DATABASE"]) if env.get("EBOOKSTORE_DATABASE") else None,
            smtp_url=env.get("EBOOKSTORE_SMTP_URL") or None,
            mail_delay=float(env.get("EBOOKSTORE_MAIL_DELAY") or 0),
            dashboard_user=env.get("EBOOKSTORE_DASHBOARD_USER") or None,
            dashboard_password=env.get("EBOOKSTORE_DASHBOARD_PASSWORD") or None,
            solutions=_flag(env.get("EBOOKSTORE_SOLUTIONS")),
            inline_emails=_flag(env.get("EBOOKSTORE_INLINE_EMAILS")),
            workers=int(env.get("EBOOKSTORE_WORKERS") or DEFAULT_WORKERS),
            queue_backend=queue_backend(env.get("EBOOKSTORE_QUEUE_BACKEND")),
        )
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def redis_password(self) -> str:
        """The password of the course's Redis: generated once per state folder, kept in a 0600 file."""
        return credentials.generated(self.home / credentials.REDIS_PASSWORD_FILE)

    @property
    def redis_url(self) -> str:
        """The URL every client connects with: the password included (never print it: see redis_url_shown)."""
        if self.external_redis_url:
            return self.external_redis_url
        return f"redis://:{self.redis_password}@127.0.0.1:{self.redis_port}/0"

    @property
    def redis_url_shown(self) -> str:
        """The Redis URL with its password masked: for messages, logs and notebooks."""
        return credentials.masked(self.redis_url)

    @property
    def database_path(self) -> Path:
        return self.database or self.home / "ebookstore.sqlite3"

    @property
    def maildir(self) -> Path:
        return self.home / "mail"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def to_env(self) -> dict[str, str]:
        """The environment variables that recreate these settings in a child process."""
        env = {
            "EBOOKSTORE_HOME": str(self.home),
            "EBOOKSTORE_REDIS_PORT": str(self.redis_port),
            "EBOOKSTORE_WEB_PORT": str(self.web_port),
            "EBOOKSTORE_SMTP_PORT": str(self.smtp_port),
            "EBOOKSTORE_DATABASE": str(self.database_path),
            "EBOOKSTORE_MAIL_DELAY": str(self.mail_delay),
            "EBOOKSTORE_SOLUTIONS": "1" if self.solutions else "0",
            "EBOOKSTORE_INLINE_EMAILS": "1" if self.inline_emails else "0",
            "EBOOKSTORE_WORKERS": str(self.workers),
            "EBOOKSTORE_QUEUE_BACKEND": self.queue_backend,
            # The URL carries the password: a process's environment is private to its user,
            # its command line is not. `rq worker` reads its URL from RQ_REDIS_URL.
            "REDIS_URL": self.redis_url,
            "RQ_REDIS_URL": self.redis_url,
        }
        optional = {
            "EBOOKSTORE_SMTP_URL": self.smtp_url,
            "EBOOKSTORE_DASHBOARD_USER": self.dashboard_user,
            "EBOOKSTORE_DASHBOARD_PASSWORD": self.dashboard_password,
        }
        env.update({key: value for key, value in optional.items() if value})
        return env
