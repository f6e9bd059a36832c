"""RQ's dashboard (rq-dashboard) inside the store's web app, at /jobs, locked down.

- Basic auth: the dashboard can delete and requeue jobs.
- It never unpickles. rq-dashboard 0.9 reads jobs with RQ's default serializer (pickle)
  on its job page, delete, requeue, requeue-all and worker list, whatever its serializer
  setting says; unpickling data from Redis runs whatever code the data names. Here the
  classes and functions those routes call are swapped, in rq-dashboard's module only, for
  ones fixed to the store's JSON serializer. (It also makes workers.json work while a
  worker runs a JSON job: it used to answer 500.)
- State changes need POST and a request from the dashboard's own pages: a browser that
  holds the login would otherwise send them for any web page that asks (cross-site request
  forgery). The Origin header (or the Referer, if a browser sends no Origin) must name this
  server. GET /jobs/requeue/<queue>, which changed state, is refused.
"""
from __future__ import annotations

import functools
import secrets
from urllib.parse import urlsplit

import rq_dashboard
import rq_dashboard.web
from flask import Flask, Response, request
from rq import Worker
from rq.job import Job, requeue_job

from . import queues
from .config import Settings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
STATE_CHANGING_GETS = {"rq_dashboard.requeue_all"}


class JSONJob(Job):
    """RQ's Job, always read with the store's JSON serializer."""

    @classmethod
    def fetch(cls, id, connection=None, serializer=None):
        return super().fetch(id, connection=connection, serializer=queues.SERIALIZER)


class JSONWorker(Worker):
    """RQ's Worker whose current job is read with the JSON serializer."""

    @classmethod
    def all(cls, connection=None, job_class=None, queue_class=None, queue=None, serializer=None):
        return Worker.all(connection=connection, queue=queue, serializer=queues.SERIALIZER)


def _lock_to_json() -> None:
    web = rq_dashboard.web
    web.config.serializer = queues.SERIALIZER
    web.Job = JSONJob
    web.Worker = JSONWorker
    web.requeue_job = functools.partial(requeue_job, serializer=queues.SERIALIZER)


def same_origin(req) -> bool:
    """True if the request comes from a page of this server (Origin, else Referer)."""
    source = req.headers.get("Origin") or req.headers.get("Referer")
    if not source or source == "null":
        return False
    url = urlsplit(source)
    return f"{url.scheme}://{url.netloc}" == req.host_url.rstrip("/")


def mount(app: Flask, settings: Settings, user: str, password: str) -> None:
    """Register the dashboard at /jobs behind basic auth, JSON only, state changes by same-origin POST."""
    _lock_to_json()
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url

    @app.before_request
    def guard_dashboard():
        if request.blueprint != "rq_dashboard":
            return None
        auth = request.authorization
        if not (auth and secrets.compare_digest(auth.username or "", user)
                and secrets.compare_digest(auth.password or "", password)):
            return Response("Login required\n", 401, {"WWW-Authenticate": 'Basic realm="RQ dashboard"'})
        if request.method in SAFE_METHODS and request.endpoint in STATE_CHANGING_GETS:
            return Response("This action changes state: send it as POST from the dashboard\n", 405,
                            {"Allow": "POST"})
        if request.method not in SAFE_METHODS and not same_origin(request):
            return Response("Refused: a dashboard action must come from the dashboard's own pages "
                            "(Origin or Referer of this server)\n", 403)
        return None

    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/jobs")
    rq_dashboard.web.setup_rq_connection(app)
