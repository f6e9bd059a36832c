"""The store: a purchase is one transaction; bad input writes nothing and enqueues nothing."""
import pytest

from ebookstore import store


@pytest.fixture
def conn(tmp_path):
    conn = store.connect(tmp_path / "store.sqlite3")
    yield conn
    conn.close()


def count(conn, table):
    return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_demo_data_is_seeded_once(tmp_path):
    path = tmp_path / "store.sqlite3"
    store.connect(path).close()
    conn = store.connect(path)
    assert count(conn, "users") == len(store.DEMO_USERS)
    assert count(conn, "ebooks") == len(store.DEMO_EBOOKS)


def test_purchase_records_price_and_commission(conn):
    purchase = store.buy(conn, 1, 1)
    assert purchase["price_cents"] == 1900
    assert purchase["commission_cents"] == round(1900 * store.COMMISSION_RATE)
    assert purchase["buyer_email"] == "ada@example.test"
    assert purchase["seller_email"] == "cleo@example.test"
    assert store.get_purchase(conn, purchase["id"]) == purchase


@pytest.mark.parametrize("buyer, ebook, status, words", [
    (99, 1, 404, "no user"),
    (1, 99, 404, "no ebook"),
    (3, 1, 422, "own ebook"),          # user 3 sells ebook 1
    ("1", 1, 400, "integer"),
    (1, 1.5, 400, "integer"),
    (True, 1, 400, "integer"),
    (None, 1, 400, "missing"),
    (1, None, 400, "missing"),
])
def test_bad_purchase_writes_nothing_and_runs_no_hook(conn, buyer, ebook, status, words):
    hooked = []
    with pytest.raises(store.PurchaseError) as error:
        store.buy(conn, buyer, ebook, after_commit=hooked.append)
    assert error.value.status == status
    assert words in str(error.value)
    assert count(conn, "purchases") == 0
    assert hooked == []


def test_after_commit_sees_the_committed_row(tmp_path):
    path = tmp_path / "store.sqlite3"
    conn, other = store.connect(path), store.connect(path)
    seen = []
    # A second connection (like a worker's) must already see the purchase in the hook.
    store.buy(conn, 1, 2, after_commit=lambda p: seen.append(store.get_purchase(other, p["id"])))
    assert seen and seen[0]["ebook_id"] == 2


def test_failing_transaction_rolls_back(conn):
    with pytest.raises(RuntimeError):
        with store.transaction(conn):
            conn.execute("INSERT INTO purchases (buyer_id, ebook_id, price_cents, commission_cents, created_at)"
                         " VALUES (1, 1, 1, 1, 'now')")
            raise RuntimeError("boom")
    assert count(conn, "purchases") == 0
