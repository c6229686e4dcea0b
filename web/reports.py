"""Reports: the circulation report as JSON, CSV or an HTML page with charts.

A library's key sees its own rows and the consortium totals; the administrator sees
every row (and may ask for one library's view with ``library``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import fields, validate

from ledger.reports import render
from ledger.reports.circulation import GROUPINGS, Request, report
from web import schemas as s
from web.auth import scope
from web.queries import views
from web.reading import eventlog
from web.recording import Blueprint

bp = Blueprint("reports", __name__, url_prefix="/api/v1/reports", description="Reports")


class CirculationQuery(s.Strict):
    from_ = fields.Date(required=True, data_key="from")
    to = fields.Date(required=True)
    by = fields.String(
        load_default="library",
        metadata={"description": " | ".join(GROUPINGS) + " (checked by the report)"},
    )
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))
    library = s.Code(load_default=None)
    as_recorded_at = fields.AwareDateTime(load_default=None)


def _request(query: dict[str, Any]) -> Request:
    return Request(
        query["from_"],
        query["to"],
        query["by"],
        scope(query["library"]),
        query["as_recorded_at"],
        overdue_days=views().transit_overdue_days,  # the read models' setting: one answer
    )


def _compute(request: Request) -> dict[str, Any]:
    with eventlog().connection() as conn:
        return report(conn, request)


@bp.route("/circulation")
class Circulation(MethodView):
    @bp.arguments(CirculationQuery, location="query")
    @bp.response(200)
    def get(self, query: dict[str, Any]):
        """Loans, returns, cross-library flows, reader-visits, re-circulation, transfers and
        losses per library, region, month or borrowing × returning library; the report
        as recorded at an instant with ``as_recorded_at``. Definitions are in the answer."""
        result = _compute(_request(query))
        if query["format"] == "csv":
            return Response(render.as_csv(result), mimetype="text/csv")
        return Response(render.as_json(result), mimetype="application/json")


@bp.route("/circulation.html")
class CirculationPage(MethodView):
    @bp.arguments(CirculationQuery, location="query")
    @bp.response(200, content_type="text/html")
    def get(self, query: dict[str, Any]):
        """The same report as a page: monthly series and the flow matrix as charts (offline)."""
        request = _request(query)
        page = render.as_html(
            _compute(request),
            _compute(replace(request, by="month")),
            _compute(replace(request, by="flow")),
        )
        return Response(page, mimetype="text/html")
