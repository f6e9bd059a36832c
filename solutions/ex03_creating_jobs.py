"""Exercise 03 — creating jobs: a job function, enqueue, enqueue_in.

Notebook: notebooks/03_creating_jobs.ipynb · check: check("ex03") or `ebookstore check ex03`

RQ workers import job functions by name, so a job function must live in a
module like this one, never in the notebook.
"""
from contextlib import closing
from datetime import timedelta

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from ebookstore import mail, store
from ebookstore.config import Settings


def price_tag(ebook_id: int) -> str:
    """A job: return "<title>: $<price>" for the ebook, e.g. "Redis for the Impatient: $12.00".

    It receives an id, not an ebook: read the title and the current price
    from the store's database (Settings.from_env().database_path) when the job
    runs. mail.money() formats cents.
    """
    settings = Settings.from_env()
    with closing(store.connect(settings.database_path)) as conn:
        ebook = next(e for e in store.ebooks(conn) if e["id"] == ebook_id)
    return f"{ebook['title']}: {mail.money(ebook['price_cents'])}"


def enqueue_price_tag(redis: Redis, ebook_id: int) -> Job:
    """Enqueue `price_tag(ebook_id)` on the "default" queue, JSON-serialized; return the job (a new one each call)."""
    return Queue("default", connection=redis, serializer=JSONSerializer).enqueue(price_tag, ebook_id)


def schedule_price_tag(redis: Redis, ebook_id: int, seconds: float) -> Job:
    """Like enqueue_price_tag, but the job is to run `seconds` from now (Sidekiq's perform_in).

    "From now" holds on any machine: RQ reads a naive datetime as local time, so
    give it a timedelta (enqueue_in) or an aware datetime, never datetime.utcnow().
    """
    queue = Queue("default", connection=redis, serializer=JSONSerializer)
    return queue.enqueue_in(timedelta(seconds=seconds), price_tag, ebook_id)
