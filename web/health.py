"""Liveness for operators and load balancers: database reachable, projections' lag."""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
from flask import current_app
from flask.views import MethodView

from web.problems import HTTP_CODES, problem
from web.reading import eventlog
from web.recording import Blueprint

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__, description="Health (public, no key needed)")


class HealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"example": "ok"})
    database = ma.fields.String(metadata={"example": "ok"})
    position = ma.fields.Integer(metadata={"description": "the newest notification id"})
    projections = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Raw(),
        metadata={"description": "per projection: how far it lags behind the log"},
    )


@bp.route("/healthz")
class Health(MethodView):
    @bp.response(200, HealthSchema)
    @bp.alt_response(503, response="SERVICE_UNAVAILABLE")
    @bp.doc(security=[])
    def get(self) -> Any:
        """Database reachable, and how far each projection lags behind the log.

        The read models publish their lag as ``app.extensions["tongjie.lag"]`` (a callable
        answering a dict per projection).
        """
        lag = current_app.extensions["tongjie.lag"]
        try:
            position = eventlog().head()
            projections = lag()
        except Exception:  # any failure to answer is the same news for a load balancer
            log.exception("health check: the database does not answer")
            code, meaning = HTTP_CODES[503]
            return problem(503, code, "Service Unavailable", meaning)
        return {
            "status": "ok",
            "database": "ok",
            "position": position,
            "projections": projections,
        }
