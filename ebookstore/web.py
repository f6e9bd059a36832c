"""The store's web app: `flask --app ebookstore.web run --port 8808`.

An HTML catalog with a buy button, a JSON API, and RQ's dashboard at /jobs
(behind basic auth). A purchase commits first, then enqueues its emails: the
buyer gets the answer at once and never waits for the mail provider.
"""
from __future__ import annotations

import secrets
import sqlite3

import rq_dashboard
import rq_dashboard.web
from flask import Flask, Response, g, jsonify, render_template, request

from . import jobs, queues, store
from .config import Settings, private_home


def dashboard_credentials(settings: Settings) -> tuple[str, str]:
    """(user, password) of the dashboard: from the settings, else generated once and kept."""
    if settings.dashboard_user and settings.dashboard_password:
        return settings.dashboard_user, settings.dashboard_password
    path = settings.home / "dashboard-password"
    if not path.exists():
        private_home(settings.home)
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return settings.dashboard_user or "admin", path.read_text().strip()


def create_app(settings: Settings | None = None) -> Flask:
    """The app factory: `settings` default to the environment (see config.py)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    store.connect(settings.database_path).close()  # create and seed the database on first start

    def db() -> sqlite3.Connection:
        if "db" not in g:
            g.db = store.connect(settings.database_path)
        return g.db

    def redis():
        if "redis" not in app.extensions:
            app.extensions["redis"] = queues.connect(settings)
        return app.extensions["redis"]

    @app.teardown_appcontext
    def close_db(exc):
        conn = g.pop("db", None)
        if conn is not None:
            conn.close()

    @app.get("/")
    def catalog():
        return render_template("catalog.html", ebooks=store.ebooks(db()), users=store.users(db()))

    @app.get("/api/ebooks")
    def list_ebooks():
        return jsonify(store.ebooks(db()))

    @app.get("/api/users")
    def list_users():
        return jsonify(store.users(db()))

    @app.post("/api/purchases")
    def create_purchase():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="send a JSON object: {\"buyer_id\": int, \"ebook_id\": int}"), 400
        try:
            if settings.inline_emails:  # Chapter III: the buyer waits for every email
                purchase = store.buy(db(), body.get("buyer_id"), body.get("ebook_id"))
                jobs.purchase_notification(purchase["id"])
            else:
                purchase = jobs.buy_and_notify(db(), redis(), body.get("buyer_id"), body.get("ebook_id"), app.logger)
        except store.PurchaseError as error:
            return jsonify(error=str(error)), error.status
        return jsonify(purchase), 201

    @app.get("/api/purchases/<int:purchase_id>")
    def show_purchase(purchase_id):
        purchase = store.get_purchase(db(), purchase_id)
        if purchase is None:
            return jsonify(error=f"no purchase with id {purchase_id}"), 404
        return jsonify(purchase)

    _mount_dashboard(app, settings)
    return app


def _mount_dashboard(app: Flask, settings: Settings) -> None:
    user, password = dashboard_credentials(settings)
    rq_dashboard.web.config.serializer = queues.SERIALIZER  # our jobs are JSON, not pickle

    @app.before_request
    def require_login():
        if request.blueprint != "rq_dashboard":
            return None
        auth = request.authorization
        if not (auth and secrets.compare_digest(auth.username or "", user)
                and secrets.compare_digest(auth.password or "", password)):
            return Response("Login required\n", 401, {"WWW-Authenticate": 'Basic realm="RQ dashboard"'})

    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/jobs")
    rq_dashboard.web.setup_rq_connection(app)
