"""Statistics the store reports on: per ebook, and over a period of sales."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}


def ebook_statistics(conn, ebook_id: int) -> dict:
    """Copies sold, revenue and the seller's commission so far for one ebook (all purchases, ever).

    `conn`: a connection from store.connect. Returns {"ebook_id", "title", "copies_sold",
    "revenue_cents", "commission_cents"} — what mail.ebook_statistics_email(purchase, stats)
    takes as `stats` — or {} if there is no such ebook.
    """
    row = conn.execute(
        "SELECT e.id AS ebook_id, e.title, COUNT(p.id) AS copies_sold, "
        "COALESCE(SUM(p.price_cents), 0) AS revenue_cents, "
        "COALESCE(SUM(p.commission_cents), 0) AS commission_cents "
        "FROM ebooks e LEFT JOIN purchases p ON p.ebook_id = e.id WHERE e.id = ? GROUP BY e.id",
        (ebook_id,),
    ).fetchone()
    return dict(row) if row else {}


def period_bounds(period: str, until: datetime | None = None) -> tuple[str, str]:
    """The (since, until] window of a 'daily' or 'weekly' report, as ISO strings (UTC, milliseconds).

    `until`: an aware datetime (default: now). Raises ValueError for another period.
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {sorted(PERIODS)}, got {period!r}")
    until = until or datetime.now(timezone.utc)
    since = until - PERIODS[period]
    return since.isoformat(timespec="milliseconds"), until.isoformat(timespec="milliseconds")


def sales_statistics(conn, since: str, until: str, top: int = 3) -> dict:
    """Total sales, the most popular ebooks and the active sellers in (since, until] (ISO strings, as
    period_bounds returns them).

    Returns {"since", "until", "total_sales", "revenue_cents",
    "popular_ebooks": [{"ebook_id", "title", "copies_sold"}, …] (the `top` most sold, most first),
    "active_sellers": [{"seller_id", "name", "sales", "commission_cents"}, …] (most sales first)}.
    """
    window = (since, until)
    total = conn.execute(
        "SELECT COUNT(*) AS purchases, COALESCE(SUM(price_cents), 0) AS revenue_cents "
        "FROM purchases WHERE created_at > ? AND created_at <= ?",
        window,
    ).fetchone()
    popular = conn.execute(
        "SELECT e.id AS ebook_id, e.title, COUNT(*) AS copies_sold FROM purchases p "
        "JOIN ebooks e ON e.id = p.ebook_id WHERE p.created_at > ? AND p.created_at <= ? "
        "GROUP BY e.id ORDER BY copies_sold DESC, e.id LIMIT ?",
        (*window, top),
    ).fetchall()
    sellers = conn.execute(
        "SELECT u.id AS seller_id, u.name, COUNT(*) AS sales, SUM(p.commission_cents) AS commission_cents "
        "FROM purchases p JOIN ebooks e ON e.id = p.ebook_id JOIN users u ON u.id = e.seller_id "
        "WHERE p.created_at > ? AND p.created_at <= ? GROUP BY u.id ORDER BY sales DESC, u.id",
        window,
    ).fetchall()
    return {
        "since": since,
        "until": until,
        "total_sales": total["purchases"],
        "revenue_cents": total["revenue_cents"],
        "popular_ebooks": [dict(r) for r in popular],
        "active_sellers": [dict(r) for r in sellers],
    }
