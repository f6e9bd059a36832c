"""The store's emails: builders, delivery (Maildir or SMTP) and the outbox.

Delivery sleeps `settings.mail_delay` seconds first, to play a slow mail
provider: that delay is what background jobs take out of the purchase request.
"""
from __future__ import annotations

import mailbox
import os
import re
import smtplib
import time
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import formatdate, make_msgid, parsedate_to_datetime
from urllib.parse import urlsplit

from .config import Settings

STORE_ADDRESS = "store@ebookstore.test"
REPORTS_ADDRESS = "reports@ebookstore.test"


def money(cents: int) -> str:
    """An amount in cents as the emails show it: money(1250) == "$12.50"."""
    return f"${cents / 100:,.2f}"


def _email(to: str, subject: str, body: str, key: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = STORE_ADDRESS
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="ebookstore.test")
    # Names what this email is about (e.g. purchase-7-receipt), so a second
    # delivery of the same email can be recognised.
    message["X-Ebookstore-Key"] = key
    message.set_content(body)
    return message


def receipt_email(purchase: dict) -> EmailMessage:
    """The buyer's receipt for `purchase` (a dict from store.get_purchase or store.buy), to the buyer.

    Returns an EmailMessage (not sent yet: hand it to deliver()); its "X-Ebookstore-Key"
    header is "purchase-<id>-receipt".
    """
    return _email(
        purchase["buyer_email"],
        f"Your receipt: {purchase['title']}",
        f"Hello {purchase['buyer_name']},\n\nthank you for buying \"{purchase['title']}\" "
        f"for {money(purchase['price_cents'])} (purchase #{purchase['id']}).\n",
        f"purchase-{purchase['id']}-receipt",
    )


def commission_email(purchase: dict) -> EmailMessage:
    """The seller's commission email for `purchase` (a dict from store.get_purchase or store.buy), to the seller.

    Returns an EmailMessage (not sent yet: hand it to deliver()); its "X-Ebookstore-Key"
    header is "purchase-<id>-commission".
    """
    return _email(
        purchase["seller_email"],
        f"You sold a copy of {purchase['title']}",
        f"Hello {purchase['seller_name']},\n\n{purchase['buyer_name']} bought \"{purchase['title']}\". "
        f"Your commission: {money(purchase['commission_cents'])} (purchase #{purchase['id']}).\n",
        f"purchase-{purchase['id']}-commission",
    )


def ebook_statistics_email(purchase: dict, stats: dict) -> EmailMessage:
    """The seller's statistics email for the ebook of `purchase`, to the seller.

    `purchase`: a dict from store.get_purchase or store.buy. `stats`: the ebook's figures from
    reports.ebook_statistics(conn, purchase["ebook_id"]) (title, copies_sold, revenue_cents,
    commission_cents). Returns an EmailMessage (not sent yet: hand it to deliver()); its
    "X-Ebookstore-Key" header is "purchase-<id>-statistics".
    """
    return _email(
        purchase["seller_email"],
        f"Statistics for {stats['title']}",
        f"\"{stats['title']}\" has sold {stats['copies_sold']} copies: revenue "
        f"{money(stats['revenue_cents'])}, your commission {money(stats['commission_cents'])}.\n",
        f"purchase-{purchase['id']}-statistics",
    )


def statistics_report_email(period: str, report: dict) -> EmailMessage:
    """The sales report of `period` ("daily" or "weekly") to the store's reports address.

    `report`: what reports.sales_statistics returns. Returns an EmailMessage (not sent yet).
    """
    lines = [
        f"{period.capitalize()} report, {report['since']} to {report['until']}",
        f"Total sales: {report['total_sales']} ({money(report['revenue_cents'])})",
        "Popular ebooks:",
        *(f"  {e['copies_sold']:>4}  {e['title']}" for e in report["popular_ebooks"]),
        "Active sellers:",
        *(f"  {s['sales']:>4}  {s['name']}" for s in report["active_sellers"]),
    ]
    return _email(
        REPORTS_ADDRESS,
        f"{period.capitalize()} statistics: {report['total_sales']} sales",
        "\n".join(lines) + "\n",
        f"report-{period}-{report['until']}",
    )


def deliver(message: EmailMessage, settings: Settings, on_sent=None) -> None:
    """Send one email (an EmailMessage, e.g. from receipt_email): by SMTP if `settings.smtp_url` is set, else into
    the Maildir under settings.home. Returns nothing; raises if delivery fails (OSError, smtplib.SMTPException).

    Maildir delivery is idempotent: the file is named after the email's key, so
    delivering the same email twice leaves one file. (SMTP cannot promise that;
    the key travels in a header for the receiving side to deduplicate.)
    `on_sent()` runs the moment the email is accepted — over SMTP before the
    connection is closed — so a caller can record it with as little delay as possible.
    """
    if settings.mail_delay:
        time.sleep(settings.mail_delay)
    if settings.smtp_url:
        url = urlsplit(settings.smtp_url)
        with smtplib.SMTP(url.hostname or "127.0.0.1", url.port or 25, timeout=10) as smtp:
            smtp.send_message(message)
            if on_sent:
                on_sent()
        return
    if message["X-Ebookstore-Key"]:
        _deliver_once(message, settings)
    else:
        maildir(settings).add(message)
    if on_sent:
        on_sent()


def _deliver_once(message: EmailMessage, settings: Settings) -> None:
    maildir(settings)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", message["X-Ebookstore-Key"])
    final = settings.maildir / "new" / name
    if final.exists() or any((settings.maildir / "cur").glob(f"{name}:2,*")):
        return
    # Maildir's rule: write in tmp/, then rename into new/ (atomic: readers never see half an email).
    tmp = settings.maildir / "tmp" / f"{name}.{os.getpid()}.{time.time_ns()}"
    tmp.write_bytes(message.as_bytes())
    os.replace(tmp, final)


def maildir(settings: Settings) -> mailbox.Maildir:
    """The store's Maildir (cur/, new/, tmp/ under $EBOOKSTORE_HOME/mail), created if missing."""
    for sub in ("cur", "new", "tmp"):
        (settings.maildir / sub).mkdir(parents=True, exist_ok=True)
    return mailbox.Maildir(settings.maildir, create=False)


# A delivered email never changes (written in tmp/, then renamed into new/), so each is read once per process:
# a wait that polls the outbox (a notebook cell, a test: hundreds of emails, several looks a second) would
# otherwise parse every email again on each look. Per Maildir, keyed by the file's path, inode, size and time,
# so that a file of the same name in a Maildir made afresh is read afresh; and only once the file is older than
# a file time's grain (git's rule for its index): a newer one could be replaced by a same-sized one with the same
# inode within the same tick of the clock that stamps files.
_READ: dict[str, dict[tuple, dict]] = {}
SETTLED = 0.1  # seconds


def outbox(settings: Settings) -> list[dict]:
    """Every delivered email, oldest first: to, subject, date, key, delivered (Unix time)."""
    maildir(settings)  # created if missing
    known, now_known, found = _READ.get(str(settings.maildir), {}), {}, {}
    settled = time.time() - SETTLED
    for sub in ("new", "cur"):  # as mailbox.Maildir reads them: tmp/ holds emails still being written
        with os.scandir(settings.maildir / sub) as entries:
            for entry in entries:
                try:
                    info = entry.stat()
                    identity = (entry.path, info.st_ino, info.st_size, info.st_mtime_ns)
                    email = known.get(identity) or _read(entry.path, info.st_mtime)
                except FileNotFoundError:  # moved from new/ to cur/ meanwhile (a mail reader): seen there
                    continue
                if email is None:
                    continue
                if info.st_mtime < settled:
                    now_known[identity] = email
                # One email per name (before ":2,…", the flags a reader adds in cur/), cur/ over new/, as Maildir.
                found[entry.name.split(":")[0]] = email
    _READ[str(settings.maildir)] = now_known
    return sorted((dict(email) for email in found.values()), key=lambda m: m["delivered"])


def _read(path: str, delivered: float) -> dict | None:
    """The outbox's fields of the email in file `path` (its headers only); None if it is a folder."""
    if os.path.isdir(path):
        return None
    with open(path, "rb") as file:
        message = BytesHeaderParser().parse(file)  # the policy mailbox.Maildir reads with (compat32)
    return {
        "to": message["To"],
        "subject": message["Subject"],
        "date": parsedate_to_datetime(message["Date"]).isoformat(),
        "key": message["X-Ebookstore-Key"],
        "delivered": delivered,  # when it landed in the Maildir (the file's time), to the microsecond
    }
