"""The web app: JSON API, purchase flow, dashboard behind basic auth (a real Redis)."""
import base64

import pytest

from ebookstore import queues, store
from ebookstore.web import create_app, dashboard_credentials


@pytest.fixture
def client(settings):
    return create_app(settings).test_client()


def auth(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def queued(redis) -> int:
    return sum(queues.get_queue(n, redis).count for n in queues.load_config().names)


def test_lists_seeded_ebooks_and_users(client):
    ebooks, users = client.get("/api/ebooks").json, client.get("/api/users").json
    assert [e["title"] for e in ebooks] == [t for _, t, _ in store.DEMO_EBOOKS]
    assert len(users) == len(store.DEMO_USERS)
    assert b"Buy" in client.get("/").data


def test_purchase_answers_201_and_enqueues_its_job(client, redis):
    response = client.post("/api/purchases", json={"buyer_id": 2, "ebook_id": 4})
    assert response.status_code == 201
    body = response.json
    assert body["ebook_id"] == 4 and body["buyer_id"] == 2 and len(body["jobs"]) == 1
    # Answered with its job still queued, not run: the buyer never waits for the mail provider.
    # (How much faster that is, side by side with sending inline: bench/latency.py, `make bench`.)
    assert queues.get_queue("critical", redis).job_ids == body["jobs"]
    assert client.get(f"/api/purchases/{body['id']}").json["title"] == "The Little Book of Queues"
    assert client.get("/api/purchases/999").status_code == 404


@pytest.mark.parametrize("payload, status", [
    ({"buyer_id": 1, "ebook_id": 999}, 404),
    ({"buyer_id": 999, "ebook_id": 1}, 404),
    ({"buyer_id": 3, "ebook_id": 1}, 422),
    ({"buyer_id": "1", "ebook_id": 1}, 400),
    ({"buyer_id": 1}, 400),
    ([1, 2], 400),
])
def test_bad_purchases_answer_4xx_and_enqueue_nothing(client, redis, payload, status):
    response = client.post("/api/purchases", json=payload)
    assert response.status_code == status
    assert "error" in response.json
    assert queued(redis) == 0


def test_malformed_body_is_400(client, redis):
    response = client.post("/api/purchases", data="{not json", content_type="application/json")
    assert response.status_code == 400 and queued(redis) == 0


def test_dashboard_requires_credentials(client, settings):
    assert client.get("/jobs/").status_code == 401
    assert client.get("/jobs/", headers=auth("tutor", "wrong")).status_code == 401
    assert client.get("/jobs/", headers=auth("tutor", "test-password")).status_code == 200
    client.post("/api/purchases", json={"buyer_id": 1, "ebook_id": 1})
    data = client.get("/jobs/0/data/queues.json", headers=auth("tutor", "test-password")).json
    critical = next(q for q in data["queues"] if q["name"] == "critical")
    assert critical["count"] == 1  # the dashboard reads our JSON-serialized queue


def test_generated_dashboard_password_is_kept(settings):
    unset = settings.replace(dashboard_user=None, dashboard_password=None)
    user, password = dashboard_credentials(unset)
    assert user == "admin" and len(password) >= 12
    assert dashboard_credentials(unset) == (user, password)
    assert (settings.home / "dashboard-password").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("payload", [
    {"buyer_id": 1, "ebook_id": 2**63},
    {"buyer_id": -(2**63) - 1, "ebook_id": 1},
    {"buyer_id": 10**300, "ebook_id": 1},
    {"buyer_id": "9" * 10_000, "ebook_id": 1},
    b'{"ebook_id": 1, "buyer_id": 1' + b"0" * 5000 + b"}",
])
def test_ids_outside_sqlites_range_are_400_with_a_short_message(client, redis, payload):
    if isinstance(payload, bytes):
        response = client.post("/api/purchases", data=payload, content_type="application/json")
    else:
        response = client.post("/api/purchases", json=payload)
    assert response.status_code == 400 and len(response.json["error"]) < 120, response.json
    assert queued(redis) == 0


def test_a_purchase_id_outside_sqlites_range_is_400(client):
    response = client.get(f"/api/purchases/{2**63}")
    assert response.status_code == 400 and "out of range" in response.json["error"]
    assert len(response.json["error"]) < 120
    assert client.get(f"/api/purchases/{2**63 - 1}").status_code == 404


def test_a_large_body_is_413_and_deep_json_is_400(client, redis):
    big = client.post("/api/purchases", data=b"[" + b"1," * 20_000 + b"1]", content_type="application/json")
    assert big.status_code == 413 and "too large" in big.json["error"]
    deep = client.post("/api/purchases", data=b"[" * 8000 + b"]" * 8000, content_type="application/json")
    assert deep.status_code == 400
    assert queued(redis) == 0
