"""The store's web app: `flask --app ebookstore.web run --port 8808`.

An HTML catalog with a buy button, a JSON API, and RQ's dashboard at /jobs
(behind basic auth). A purchase commits first, then enqueues its emails through the
queue adapter (backends/): the buyer gets the answer at once and never waits for the
mail provider — except with EBOOKSTORE_QUEUE_BACKEND=inline, which sends them in the request.
"""
from __future__ import annotations

import sqlite3

from flask import Flask, g, jsonify, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge

from . import backends, credentials, dashboard, jobs, queues, store
from .config import Settings

MAX_BODY = 16 * 1024  # bytes: a purchase is two ids; anything bigger is refused (413) before it is read


def dashboard_credentials(settings: Settings) -> tuple[str, str]:
    """(user, password) of the dashboard: from the settings, else generated once and kept (0600)."""
    if settings.dashboard_user and settings.dashboard_password:
        return settings.dashboard_user, settings.dashboard_password
    password = credentials.generated(settings.home / credentials.DASHBOARD_PASSWORD_FILE, nbytes=12)
    return settings.dashboard_user or "admin", password


def create_app(settings: Settings | None = None) -> Flask:
    """The app factory: `settings` default to the environment (see config.py)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
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

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error):
        return jsonify(error=f"request body too large (at most {MAX_BODY} bytes)"), 413

    @app.post("/api/purchases")
    def create_purchase():
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # JSON nested deeper than Python's parser goes
            body = None
        if not isinstance(body, dict):
            return jsonify(error="send a JSON object: {\"buyer_id\": int, \"ebook_id\": int}"), 400
        try:
            if settings.inline_emails:  # Chapter III: the buyer waits for every email
                purchase = store.buy(db(), body.get("buyer_id"), body.get("ebook_id"))
                jobs.purchase_notification(purchase["id"])
            else:
                purchase = jobs.buy_and_notify(db(), redis(), body.get("buyer_id"), body.get("ebook_id"), app.logger,
                                               backends.get(settings, redis()))
        except store.PurchaseError as error:
            return jsonify(error=str(error)), error.status
        return jsonify(purchase), 201

    @app.get("/api/purchases/<int:purchase_id>")
    def show_purchase(purchase_id):
        if not store.valid_id(purchase_id):
            return jsonify(error=f"purchase id out of range (a 64-bit integer): {store.shown(purchase_id)}"), 400
        purchase = store.get_purchase(db(), purchase_id)
        if purchase is None:
            return jsonify(error=f"no purchase with id {purchase_id}"), 404
        return jsonify(purchase)

    dashboard.mount(app, settings, *dashboard_credentials(settings))
    return app
