"""Exercise 12 — reliability: a notification job that can run twice, or be killed halfway, and still sends each email once.

Notebook: notebooks/12_reliability.ipynb · check: check("ex12") or `ebookstore check ex12`
"""
from contextlib import closing

from ebookstore import mail, store
from ebookstore.config import Settings


def notify_once(purchase_id: int) -> list[str]:
    """A job: send the purchase's receipt and commission emails, each at most once, ever.

    RQ runs a job *at least* once: after a retry or a killed worker, it runs
    again. Keep a ledger: the store's `deliveries` table (key TEXT PRIMARY KEY,
    delivered_at TEXT) holds the key (message["X-Ebookstore-Key"]) of every
    email sent. Skip an email whose key is there; after sending one, add its key.
    Deliver with mail.deliver(message, settings) (the check delivers by SMTP,
    which does not deduplicate for you). Return the keys sent by this run.
    """
    settings = Settings.from_env()
    sent = []
    with closing(store.connect(settings.database_path)) as conn:
        purchase = store.get_purchase(conn, purchase_id)
        for message in (mail.receipt_email(purchase), mail.commission_email(purchase)):
            key = message["X-Ebookstore-Key"]
            if conn.execute("SELECT 1 FROM deliveries WHERE key = ?", (key,)).fetchone():
                continue
            mail.deliver(message, settings)
            conn.execute("INSERT INTO deliveries (key, delivered_at) VALUES (?, ?)", (key, store.now_iso()))
            sent.append(key)
    return sent
