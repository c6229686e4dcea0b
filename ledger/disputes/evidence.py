"""The evidence file of a dispute: the item's whole timeline, put to the question "who had it".

For every event of the item: what happened, which desk recorded it and under which
key, when it happened and when the ledger recorded it (an upload long after the fact
stands out), where the item physically was afterwards and which library was
responsible for it. Then the last library that *provably* held it: the last event
in which a library's own desk handled the copy (lent it, took it back, packed it,
unpacked it, found it) — the natural starting point for "who is liable".

Two queries: the dispute's stream (folded into the dispute), then the item's, both
with ``recorded_at`` and positions from the event log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ledger.domain.common import CONSORTIUM_TZ
from ledger.domain.disputes import Dispute
from ledger.domain.errors import UnknownDispute
from ledger.domain.items import Item, Status
from ledger.eventlog import EventLog, Recorded, fold

#: Desks that work offline sync at the end of their opening day at the latest; an event
#: recorded more than a day after it happened missed that sync, so it is flagged as a
#: late upload (it may be honest — a desk that was offline for a week — or written up
#: after the fact, which is what an arbiter wants to see).
LATE_UPLOAD = timedelta(hours=24)

#: Events in which the acting library's desk physically handled the copy, and why that
#: proves it held it. A renewal, a loss declaration, a cancellation or a correction can
#: be recorded without the book in hand, so they prove nothing about custody.
PROOF = {
    "Registered": "registered the copy at its desk (the owner's shelf)",
    "Borrowed": "lent it at its desk: the copy was in hand when the reader took it",
    "Returned": "took it back from the reader at its desk",
    "TransferDispatched": "packed and dispatched it from its desk",
    "TransferReceived": "received the shipment and scanned it in",
    "ReceivedUnannounced": "scanned it in on arrival (no dispatch on record)",
    "Found": "scanned it in when it turned up",
    "Withdrawn": "withdrew it from its own stock",
}


@dataclass(frozen=True)
class Moment:
    """Where the item was after one event."""

    status: str
    physically_at: str | None  # the library whose building it is in; None: reader, road, lost
    custodian: str  # the library responsible for it
    describe: str


def _moment(item: Item) -> Moment:
    status = item.status
    if status is Status.ON_LOAN and item.loan is not None:
        return Moment(
            str(status),
            None,
            item.custodian,
            f"with a reader (lent by {item.loan.library}, due {_local(item.loan.due_at)})",
        )
    if status is Status.IN_TRANSIT and item.transfer is not None:
        t = item.transfer
        return Moment(
            str(status), None, item.custodian, f"in transit {t.from_library} → {t.to_library}"
        )
    if status is Status.LOST:
        return Moment(str(status), None, item.custodian, f"lost (last at {item.location})")
    if status is Status.WITHDRAWN:
        return Moment(str(status), None, item.custodian, "withdrawn from stock")
    where = f"on shelf at {item.location}"
    if status is Status.AWAITING_TRANSFER:
        where = f"at {item.location}, waiting to go home to {item.destination}"
    return Moment(str(status), item.location, item.custodian, where)


def _local(at: datetime) -> str:
    return at.astimezone(CONSORTIUM_TZ).isoformat(timespec="seconds")


#: The envelope, shown in columns of its own rather than among an event's details.
_ENVELOPE = frozenset(
    {
        "originator_id",
        "originator_version",
        "timestamp",
        "occurred_at",
        "library",
        "recorded_by",
        "command_id",
        "owner",
        "holding",
    }
)


def _details(event: Any) -> dict[str, Any]:
    """The event's own fields (UUIDs, times and decimals are written out by ``ledger.jsonout``)."""
    return {k: v for k, v in vars(event).items() if k not in _ENVELOPE}


def load_dispute(log: EventLog, dispute_id: UUID) -> Dispute:
    """The dispute, folded from its stream (``UnknownDispute`` if it is none)."""
    return _dispute(dispute_id, log.stream(dispute_id))


def _dispute(dispute_id: UUID, stream: list[Recorded]) -> Dispute:
    found = fold(r.event for r in stream)
    if not isinstance(found, Dispute):
        raise UnknownDispute(f"no dispute {dispute_id}", field="dispute_id")
    return found


def build(log: EventLog, dispute_id: UUID, *, now: datetime | None = None) -> dict[str, Any]:
    """The evidence file of one dispute, as plain JSON values."""
    case_stream = log.stream(dispute_id)
    dispute = _dispute(dispute_id, case_stream)
    item_stream = log.streams([dispute.item_id])[dispute.item_id]
    opened = case_stream[0]

    timeline: list[dict[str, Any]] = []
    item: Item | None = None
    last_proof: dict[str, Any] | None = None
    proof_before_opening: dict[str, Any] | None = None
    previous_occurred: datetime | None = None
    for recorded in item_stream:
        event = recorded.event
        name = type(event).__name__
        item = event.mutate(item)
        assert item is not None
        moment = _moment(item)
        lag = recorded.recorded_at - event.occurred_at
        after_opening = recorded.position > opened.position
        entry = {
            "version": event.originator_version,
            "position": recorded.position,
            "event": name,
            "occurred_at": event.occurred_at,
            "recorded_at": recorded.recorded_at,
            "recorded_after_seconds": round(lag.total_seconds()),
            "late_upload": lag > LATE_UPLOAD,
            "recorded_after_dispute_opened": after_opening,
            "out_of_order": previous_occurred is not None and event.occurred_at < previous_occurred,
            "library": event.library,
            "recorded_by": event.recorded_by,
            "command_id": event.command_id,
            "custodian_before": getattr(event, "holding", None),
            "status": moment.status,
            "physically_at": moment.physically_at,
            "custodian": moment.custodian,
            "where": moment.describe,
            "proves_holding": event.library if name in PROOF else None,
            "details": _details(event),
        }
        timeline.append(entry)
        previous_occurred = max(previous_occurred or event.occurred_at, event.occurred_at)
        if name in PROOF:
            proof = _proof(entry, PROOF[name])
            last_proof = proof
            if not after_opening:
                proof_before_opening = proof

    assert item is not None
    return {
        "dispute": _case(dispute, case_stream),
        "item": {
            "item_id": str(item.id),
            "owner": item.owner,
            "barcode": item.barcode,
            "title": item.title,
            "status": str(item.status),
            "where": _moment(item).describe,
            "custodian": item.custodian,
            "events": len(item_stream),
        },
        "timeline": timeline,
        "last_provable_holder": last_proof,
        "last_provable_holder_when_opened": proof_before_opening,
        "late_uploads": sum(1 for e in timeline if e["late_upload"]),
        "recorded_after_dispute_opened": sum(
            1 for e in timeline if e["recorded_after_dispute_opened"]
        ),
        "late_upload_threshold_hours": LATE_UPLOAD.total_seconds() / 3600,
        "generated_at": now or datetime.now(UTC),
        "reading_notes": READING_NOTES,
    }


READING_NOTES = [
    "Times: occurred_at is when the desk says it happened; recorded_at is when the ledger "
    "stored it. An upload more than "
    f"{int(LATE_UPLOAD.total_seconds() // 3600)} h after the fact is flagged as late.",
    "physically_at is the library whose building holds the copy after the event (none while "
    "a reader has it, on the road, or lost); custodian is the library responsible for it "
    "(the lender during a loan, the sender during a shipment).",
    "A library provably held the copy when its own desk recorded handling it: registering, "
    "lending, taking back, dispatching, receiving or finding it. Renewals, loss declarations, "
    "cancellations and corrections can be recorded without the book in hand.",
    "Events recorded after the dispute was opened are marked: they were written knowing "
    "the dispute existed.",
]


def _proof(entry: dict[str, Any], why: str) -> dict[str, Any]:
    return {
        "library": entry["library"],
        "event": entry["event"],
        "version": entry["version"],
        "occurred_at": entry["occurred_at"],
        "recorded_at": entry["recorded_at"],
        "recorded_by": entry["recorded_by"],
        "late_upload": entry["late_upload"],
        "recorded_after_dispute_opened": entry["recorded_after_dispute_opened"],
        "why": f"{entry['library']} {why}",
    }


def _case(dispute: Dispute, stream: list[Recorded]) -> dict[str, Any]:
    events = []
    for recorded in stream:
        event = recorded.event
        events.append(
            {
                "version": event.originator_version,
                "event": type(event).__name__,
                "occurred_at": event.occurred_at,
                "recorded_at": recorded.recorded_at,
                "library": event.library,
                "recorded_by": event.recorded_by,
                "details": _details(event),
            }
        )
    resolution = dispute.resolution
    return {
        "dispute_id": str(dispute.id),
        "kind": str(dispute.kind),
        "status": str(dispute.status),
        "opened_by": dispute.opened_by,
        "other_party": dispute.other_party,
        "opened_at": dispute.opened_at,
        "trigger": dispute.trigger,
        "reference_id": str(dispute.reference_id) if dispute.reference_id else None,
        "statements": len(dispute.statements),
        "attachments": [
            {
                "library": a.library,
                "uri": a.uri,
                "sha256": a.sha256,
                "description": a.description,
                "occurred_at": a.occurred_at,
            }
            for a in dispute.attachments
        ],
        "resolution": None
        if resolution is None
        else {
            "liable_library": resolution.liable_library,
            "compensation_cny": str(resolution.compensation_cny),
            "text": resolution.text,
            "recorded_by": resolution.recorded_by,
            "occurred_at": resolution.occurred_at,
        },
        "closed_reason": dispute.closed_reason,
        "events": events,
    }


_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_TEMPLATES.filters["local"] = lambda at: _local(at) if isinstance(at, datetime) else at
_TEMPLATES.filters["ago"] = lambda seconds: _duration(int(seconds))


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def render_html(evidence: dict[str, Any]) -> str:
    """A page a librarian can read, print or save: no script, no CDN, styles inline."""
    return _TEMPLATES.get_template("evidence.html").render(e=evidence)
