"""The read models over HTTP: open loans, shipments, balances, holdings, item histories.

Thin: parse the query (marshmallow, unknown parameters refused) → one call into
``ledger.projections.views`` → serialise. ``after=POSITION`` waits (bounded by
``LEDGER_READ_WAIT``) until the read model has folded a command's events; if it does
not in time, the answer is a 503 problem rather than stale data; a position the log never
reached is refused at once (422). Readers appear only
as their random id and masked number.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from flask import current_app
from flask.blueprints import BlueprintSetupState
from flask.views import MethodView

from ledger.config import Settings
from ledger.projections.history import Entry
from ledger.projections.views import Views
from web import query_schemas as q
from web.items import state as item_state
from web.reading import eventlog
from web.recording import Blueprint

bp = Blueprint("queries", __name__, url_prefix="/api/v1", description="Read models")


@bp.record_once
def _set_up(setup: BlueprintSetupState) -> None:
    app = setup.app
    defaults = Settings.from_env()
    app.extensions["tongjie.views.settings"] = {
        "transit_overdue_days": int(
            app.config.get("LEDGER_TRANSIT_OVERDUE_DAYS", defaults.transit_overdue_days)
        ),
        "read_wait": float(app.config.get("LEDGER_READ_WAIT", defaults.read_wait)),
    }
    app.extensions["tongjie.lag"] = lambda: views().lag()  # /healthz shows how far each lags


def views() -> Views:
    """The read models over the app's event log, made on first use (an app built only for
    its spec, without a ledger, never reads)."""
    found = current_app.extensions.get("tongjie.views")
    if found is None:
        found = Views(eventlog(), **current_app.extensions["tongjie.views.settings"])
        current_app.extensions["tongjie.views"] = found
    return found


def _page(page: Any, key: str, **extra: Any) -> dict[str, Any]:
    return {key: page.rows, "next_cursor": page.next_cursor, "position": page.position, **extra}


@bp.route("/loans")
class Loans(MethodView):
    @bp.arguments(q.LoansQuery, location="query", as_kwargs=True)
    @bp.response(200, q.LoanPage)
    def get(self, **query: Any):
        """Open loans: by borrowing library, by reader, or overdue as of an instant."""
        return _page(views().loans(**query), "loans")


@bp.route("/transits")
class Transits(MethodView):
    @bp.arguments(q.TransitsQuery, location="query", as_kwargs=True)
    @bp.response(200, q.TransitPage)
    def get(self, **query: Any):
        """Shipments dispatched and not yet received, oldest first, with their age."""
        return _page(
            views().transits(**query),
            "transits",
            overdue_after_days=views().transit_overdue_days,
        )


@bp.route("/locations")
class Locations(MethodView):
    @bp.arguments(q.LocationsQuery, location="query", as_kwargs=True)
    @bp.response(200, q.LocationPage)
    def get(self, **query: Any):
        """Items and where they are: by custodian library, owner and/or status."""
        return _page(views().items(**query), "items")


@bp.route("/libraries/<code>/balance")
class LibraryBalance(MethodView):
    @bp.arguments(q.ConsistencyQuery, location="query", as_kwargs=True)
    @bp.response(200, q.Balance)
    def get(self, code: str, **query: Any):
        """Who holds whose books: the library's line of the consortium's settlement sheet."""
        return views().balance(library=code, **query)


@bp.route("/libraries/<code>/holdings")
class Holdings(MethodView):
    @bp.arguments(q.HoldingsQuery, location="query", as_kwargs=True)
    @bp.response(200, q.HoldingPage)
    def get(self, code: str, as_of: datetime | None, **query: Any):
        """The items the library held at an instant (default now): shelf or on loan."""
        at = as_of or datetime.now(UTC)
        page = views().holdings(library=code, at=at, **query)
        return _page(page, "items", library=code, as_of=at)


@bp.route("/items/<owner>/<barcode>/history")
class ItemHistory(MethodView):
    @bp.arguments(q.HistoryQuery, location="query", as_kwargs=True)
    @bp.response(200, q.HistoryOut)
    def get(
        self,
        owner: str,
        barcode: str,
        as_of: datetime | None,
        basis: str,
        after: int | None,
    ):
        """The item's full history from its own stream, with the state after each event;
        with ``as_of``, the state at that instant and the events in force then."""
        history = views().history(owner, barcode)
        body: dict[str, Any] = {
            "item_id": history.item_id,
            "owner": owner,
            "barcode": barcode,
            "as_of": None,
        }
        entries = history.entries
        if as_of is not None:
            answer = views().as_of(owner, barcode, as_of, basis)  # type: ignore[arg-type]
            entries = [e for e in entries if answer.entry and e.version <= answer.entry.version]
            body["as_of"] = {
                "at": as_of,
                "basis": basis,
                "existed": answer.existed,
                "message": answer.message,
                "version": answer.entry.version if answer.entry else None,
                "state": _plain(item_state(answer.state)) if answer.state is not None else None,
            }
        body["events"] = [_entry(e) for e in entries]
        return body


def _entry(entry: Entry) -> dict[str, Any]:
    return {
        "version": entry.version,
        "position": entry.position,
        "event": entry.event,
        "occurred_at": entry.occurred_at,
        "effective_at": entry.effective_at,
        "recorded_at": entry.recorded_at,
        "library": entry.library,
        "recorded_by": entry.recorded_by,
        "command_id": entry.command_id,
        "details": _plain(entry.details),
        "state": _plain(item_state(entry.state)),
    }


def _plain(value: Any) -> Any:
    """JSON values for free-form dicts: ISO 8601 times, UUIDs and enums as strings."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value
