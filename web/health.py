"""Liveness for operators and load balancers: database reachable, projections' lag."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

bp = Blueprint("health", __name__, description="Health")


@bp.route("/healthz")
class Health(MethodView):
    @bp.response(200)
    @bp.alt_response(503, description="the database does not answer")
    def get(self) -> Any:
        """Database reachable, and how far each projection lags behind the log."""
        ledger = current_app.extensions["tongjie.ledger"]
        try:
            with ledger.datastore.get_connection() as conn:
                row = conn.execute(
                    "SELECT coalesce(max(notification_id), 0) AS position FROM circulation_events"
                ).fetchone()
        except Exception as error:
            return {"status": "unavailable", "database": str(error)}, 503
        body: dict[str, Any] = {"status": "ok", "database": "ok", "position": row["position"]}
        lag = current_app.extensions.get("tongjie.lag")
        if lag is not None:
            body["projections"] = lag()
        return body
