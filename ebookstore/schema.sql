-- The ebook store's tables. Money is kept in cents (integers) so that sums are exact.
CREATE TABLE IF NOT EXISTS users (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL UNIQUE,
    is_seller  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS ebooks (
    id           INTEGER PRIMARY KEY,
    seller_id    INTEGER NOT NULL REFERENCES users(id),
    title        TEXT NOT NULL,
    price_cents  INTEGER NOT NULL CHECK (price_cents >= 0)
);

CREATE TABLE IF NOT EXISTS purchases (
    id                INTEGER PRIMARY KEY,
    buyer_id          INTEGER NOT NULL REFERENCES users(id),
    ebook_id          INTEGER NOT NULL REFERENCES ebooks(id),
    price_cents       INTEGER NOT NULL,
    commission_cents  INTEGER NOT NULL,  -- the seller's share of the price
    created_at        TEXT NOT NULL      -- UTC, ISO 8601
);

CREATE INDEX IF NOT EXISTS purchases_by_ebook ON purchases (ebook_id);
CREATE INDEX IF NOT EXISTS purchases_by_time ON purchases (created_at);

-- The transactional outbox: jobs to enqueue, written in the same transaction as the
-- purchase. A purchase therefore never loses its emails, even when Redis is down:
-- the relay (ebookstore relay) enqueues whatever is still pending.
CREATE TABLE IF NOT EXISTS outbox (
    id           INTEGER PRIMARY KEY,
    job_id       TEXT NOT NULL UNIQUE,   -- the RQ job id: enqueueing twice is harmless
    func         TEXT NOT NULL,          -- import path of the job function
    args         TEXT NOT NULL,          -- JSON list
    queue        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    enqueued_at  TEXT,                   -- NULL while pending
    handed_over_at TEXT,                 -- set when the purchase's request could not enqueue (Redis down)
    completed_at TEXT                    -- set by the job when it has done its work
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE enqueued_at IS NULL;

-- Emails delivered, by idempotency key (purchase-7-receipt): a job that runs twice
-- (a retry, a recovery after kill -9) skips what was already sent.
CREATE TABLE IF NOT EXISTS deliveries (
    key           TEXT PRIMARY KEY,
    delivered_at  TEXT NOT NULL
);

-- Claims: who is sending an email right now. A job may run twice *at the same time* (enqueued
-- twice, or retried while the work-horse of a killed worker still runs it): the ledger alone
-- would let both copies send. Only the holder of an email's claim sends it (see claims.py).
CREATE TABLE IF NOT EXISTS claims (
    key         TEXT PRIMARY KEY,   -- the email's key, as in deliveries
    holder      TEXT NOT NULL,      -- host/pid/start time of the process sending it
    token       INTEGER NOT NULL,   -- fencing token: one more for every new holder
    expires_at  REAL NOT NULL       -- Unix time: a holder that hangs loses the claim then
);
