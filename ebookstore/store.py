"""The ebook store's data: users, ebooks and purchases in SQLite.

A purchase is one transaction. Whatever must happen after it (emails, jobs)
runs only once the transaction has committed: `buy(..., after_commit=...)`.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .config import PACKAGE_DIR

ID_MIN, ID_MAX = -2**63, 2**63 - 1  # SQLite's INTEGER: a larger id would raise OverflowError, not "no such row"
COMMISSION_RATE = 0.8  # the seller's share of each sale; the store keeps the rest

DEMO_USERS = [  # (name, email, is_seller)
    ("Ada Buyer", "ada@example.test", 0),
    ("Ben Buyer", "ben@example.test", 0),
    ("Cleo Author", "cleo@example.test", 1),
    ("Dev Author", "dev@example.test", 1),
]
DEMO_EBOOKS = [  # (seller email, title, price in cents)
    ("cleo@example.test", "Background Jobs in Practice", 1900),
    ("cleo@example.test", "Redis for the Impatient", 1200),
    ("dev@example.test", "Signals, Processes and You", 1500),
    ("dev@example.test", "The Little Book of Queues", 900),
]


class PurchaseError(ValueError):
    """A purchase that cannot happen; `status` is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


_initialized: set[str] = set()  # databases this process has already created or checked


def connect(path: Path | str) -> sqlite3.Connection:
    """Open the database; rows behave like dicts. Creates and seeds it when new.

    The schema is checked once per process and database, not on every connection
    (the web app opens one per request, a worker one per job).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.exists() or str(path) not in _initialized  # deleted and made again counts as new
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    conn.row_factory = sqlite3.Row
    # WAL lets the web app write while workers read; with synchronous=NORMAL a commit
    # survives a crash of any process (not a power cut) without an fsync per commit.
    # Foreign keys catch bad ids.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    if fresh:
        init_db(conn)
        _initialized.add(str(path))
    return conn


def init_db(conn: sqlite3.Connection) -> None:
    """Create the tables if missing and add the demo data to an empty store."""
    conn.executescript((PACKAGE_DIR / "schema.sql").read_text())
    # A state folder made by an earlier version of the course lacks these columns.
    columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    for column in ("completed_at", "handed_over_at"):
        if column not in columns:
            conn.execute(f"ALTER TABLE outbox ADD COLUMN {column} TEXT")
    if conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]:
        return
    with transaction(conn):
        conn.executemany("INSERT INTO users (name, email, is_seller) VALUES (?, ?, ?)", DEMO_USERS)
        for email, title, price in DEMO_EBOOKS:
            conn.execute(
                "INSERT INTO ebooks (seller_id, title, price_cents) "
                "SELECT id, ?, ? FROM users WHERE email = ?",
                (title, price, email),
            )


class transaction:
    """`with transaction(conn):` BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def users(conn) -> list[dict]:
    """Every user: {"id", "name", "email", "is_seller"}, by id."""
    return [dict(r) for r in conn.execute("SELECT id, name, email, is_seller FROM users ORDER BY id")]


def ebooks(conn) -> list[dict]:
    """Every ebook: {"id", "title", "price_cents", "seller_id", "seller_name"}, by id (current prices)."""
    rows = conn.execute(
        "SELECT e.id, e.title, e.price_cents, e.seller_id, u.name AS seller_name "
        "FROM ebooks e JOIN users u ON u.id = e.seller_id ORDER BY e.id"
    )
    return [dict(r) for r in rows]


def get_purchase(conn, purchase_id: int) -> dict | None:
    """A purchase with its ebook, buyer and seller: everything its emails need; None if there is no such id.

    Returns {"id", "buyer_id", "ebook_id", "price_cents", "commission_cents", "created_at", "title",
    "seller_id", "buyer_name", "buyer_email", "seller_name", "seller_email"}: what mail.receipt_email,
    mail.commission_email and mail.ebook_statistics_email take as `purchase`.
    """
    if not valid_id(purchase_id):
        return None
    row = conn.execute(
        "SELECT p.*, e.title, e.seller_id, b.name AS buyer_name, b.email AS buyer_email, "
        "s.name AS seller_name, s.email AS seller_email "
        "FROM purchases p JOIN ebooks e ON e.id = p.ebook_id "
        "JOIN users b ON b.id = p.buyer_id JOIN users s ON s.id = e.seller_id "
        "WHERE p.id = ?",
        (purchase_id,),
    ).fetchone()
    return dict(row) if row else None


def shown(value, limit: int = 40) -> str:
    """`value` as an error message may echo it: its repr (text as is), cut to `limit` characters.

    A message that repeats the whole input would send a 64 MB id straight back.
    """
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def valid_id(value) -> bool:
    """True for an int SQLite can store (bool is no id, although Python counts it as an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and ID_MIN <= value <= ID_MAX


def _require_id(value, field: str) -> int:
    if value is None:
        raise PurchaseError(f"missing field: {field}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise PurchaseError(f"{field} must be an integer, got {shown(value)}")
    if not valid_id(value):
        raise PurchaseError(f"{field} is out of range (a 64-bit integer), got {shown(value)}")
    return value


def buy(conn, buyer_id, ebook_id, *, in_transaction: Callable[[sqlite3.Connection, int], None] | None = None,
        after_commit: Callable[[dict], None] | None = None) -> dict:
    """Record that `buyer_id` bought `ebook_id`, in one transaction; return the purchase (as get_purchase does).

    Raises PurchaseError (nothing written) on bad input. `in_transaction(conn,
    purchase_id)` writes more rows in the same transaction (the outbox).
    `after_commit(purchase)` runs only after COMMIT: a job enqueued inside the
    transaction could run before the row is visible, or after a rollback for a
    purchase that never was.
    """
    buyer_id, ebook_id = _require_id(buyer_id, "buyer_id"), _require_id(ebook_id, "ebook_id")
    with transaction(conn):
        buyer = conn.execute("SELECT id FROM users WHERE id = ?", (buyer_id,)).fetchone()
        if buyer is None:
            raise PurchaseError(f"no user with id {buyer_id}", 404)
        ebook = conn.execute("SELECT * FROM ebooks WHERE id = ?", (ebook_id,)).fetchone()
        if ebook is None:
            raise PurchaseError(f"no ebook with id {ebook_id}", 404)
        if ebook["seller_id"] == buyer_id:
            raise PurchaseError("you cannot buy your own ebook", 422)
        price = ebook["price_cents"]
        cursor = conn.execute(
            "INSERT INTO purchases (buyer_id, ebook_id, price_cents, commission_cents, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (buyer_id, ebook_id, price, round(price * COMMISSION_RATE), now_iso()),
        )
        purchase_id = cursor.lastrowid
        if in_transaction is not None:
            in_transaction(conn, purchase_id)
    purchase = get_purchase(conn, purchase_id)
    if after_commit is not None:
        after_commit(purchase)
    return purchase


def now_iso() -> str:
    """The current time as the store keeps it: ISO text in UTC with milliseconds (e.g. for created_at, delivered_at)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def iso(timestamp: float) -> str:
    """A Unix time as the ISO text the store keeps (UTC, milliseconds): such texts sort by time."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")
