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
