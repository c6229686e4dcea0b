"""The dispute list and the settlement sheet, folded from the dispute and loss events.

Disputes are few (a handful per library per month) and every one of their events is
reached through a partial index (migration 0006), so both are folded on request
from the event store: always current, no projection to wait for.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from ledger.domain.common import CONSORTIUM_TZ
from ledger.domain.disputes import Dispute, DisputeStatus, ReturnClaim
from ledger.domain.errors import InvalidInput
from ledger.eventlog import EventLog
from ledger.projections.paging import check_period

#: A page of the dispute list: a screenful for a person, small enough to stay quick.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass
class Folded:
    disputes: dict[UUID, Dispute] = field(default_factory=dict)
    claims: dict[UUID, ReturnClaim] = field(default_factory=dict)
    opened_position: dict[UUID, int] = field(default_factory=dict)
    updated_at: dict[UUID, datetime] = field(default_factory=dict)


def fold_all(log: EventLog) -> Folded:
    """Every dispute and return claim, as aggregates."""
    out = Folded()
    for recorded in log.dispute_events():
        event = recorded.event
        key = event.originator_id
        if isinstance(event, ReturnClaim.Recorded):
            out.claims[key] = event.mutate(None)
            continue
        out.disputes[key] = event.mutate(out.disputes.get(key))
        out.opened_position.setdefault(key, recorded.position)
        out.updated_at[key] = recorded.recorded_at
    return out


def summary(dispute: Dispute, updated_at: datetime | None = None) -> dict[str, Any]:
    resolution = dispute.resolution
    return {
        "dispute_id": str(dispute.id),
        "kind": str(dispute.kind),
        "status": str(dispute.status),
        "owner": dispute.owner,
        "barcode": dispute.barcode,
        "item_id": str(dispute.item_id),
        "opened_by": dispute.opened_by,
        "other_party": dispute.other_party,
        "opened_at": dispute.opened_at,
        "automatic": dispute.trigger is not None,
        "trigger": dispute.trigger,
        "statements": len(dispute.statements),
        "attachments": len(dispute.attachments),
        "liable_library": resolution.liable_library if resolution else None,
        "compensation_cny": str(resolution.compensation_cny) if resolution else None,
        "updated_at": updated_at,
    }


def list_disputes(
    log: EventLog,
    *,
    only_open: bool = False,
    library: str | None = None,
    limit: int = DEFAULT_LIMIT,
    before: int | None = None,
) -> dict[str, Any]:
    """Newest first. ``library``: disputes it is a party to. ``before``: the cursor of the
    previous page (the log position of the last dispute on it)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit is between 1 and {MAX_LIMIT}", field="limit")
    folded = fold_all(log)
    rows = []
    for dispute_id, dispute in folded.disputes.items():
        position = folded.opened_position[dispute_id]
        if before is not None and position >= before:
            continue
        if only_open and dispute.status is not DisputeStatus.OPEN:
            continue
        if library is not None and library not in dispute.parties:
            continue
        rows.append((position, dispute))
    rows.sort(key=lambda pair: pair[0], reverse=True)
    page = rows[:limit]
    return {
        "disputes": [summary(d, folded.updated_at.get(d.id)) for _, d in page],
        "next": page[-1][0] if len(rows) > limit else None,
    }


def open_disputes_by_item(folded: Folded) -> dict[tuple[UUID, str], Dispute]:
    """Open disputes by (item, kind): the sweep does not open a second one beside them."""
    return {
        (d.item_id, str(d.kind)): d
        for d in folded.disputes.values()
        if d.status is DisputeStatus.OPEN
    }


# ---------------------------------------------------------------- settlement


def _local_day(at: datetime) -> date:
    return at.astimezone(CONSORTIUM_TZ).date()


def settlement(
    log: EventLog, start: date, end: date, *, library: str | None = None
) -> dict[str, Any]:
    """Per ordered pair of libraries (payer → payee), for days ``start``..``end`` (local):

    * items the payee owns that were declared lost while the payer was their custodian
      (on loan from the payer's desk, on its shelf, or shipped by it);
    * disputes resolved in the period with the payer liable, and the compensation due
      to the other party.
    """
    check_period(start, end)
    pairs: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"items_lost": [], "disputes": [], "compensation": Decimal("0.00")}
    )
    losses = [
        r.event
        for r in log.losses()
        if start <= _local_day(r.event.occurred_at) <= end and r.event.holding != r.event.owner
    ]
    items = log.load({event.originator_id for event in losses})
    for event in losses:
        pairs[(event.holding, event.owner)]["items_lost"].append(
            {
                "item_id": str(event.originator_id),
                "barcode": getattr(items[event.originator_id], "barcode", None),
                "lost_at": event.occurred_at,
                "reason": event.reason,
                "declared_by": event.library,
            }
        )
    for dispute in fold_all(log).disputes.values():
        resolution = dispute.resolution
        if resolution is None or resolution.liable_library is None:
            continue
        if not start <= _local_day(resolution.occurred_at) <= end:
            continue
        payer = resolution.liable_library
        payee = dispute.other_party if payer == dispute.opened_by else dispute.opened_by
        pair = pairs[(payer, payee)]
        pair["disputes"].append(
            {
                "dispute_id": str(dispute.id),
                "kind": str(dispute.kind),
                "item": f"{dispute.owner}/{dispute.barcode}",
                "compensation_cny": str(resolution.compensation_cny),
                "resolved_at": resolution.occurred_at,
            }
        )
        pair["compensation"] += resolution.compensation_cny
    rows = []
    for (payer, payee), pair in sorted(pairs.items()):
        if library is not None and library not in (payer, payee):
            continue
        rows.append(
            {
                "payer": payer,
                "payee": payee,
                "items_lost_in_payer_custody": len(pair["items_lost"]),
                "disputes_resolved": len(pair["disputes"]),
                "compensation_cny": str(pair["compensation"]),
                "items_lost": pair["items_lost"],
                "disputes": pair["disputes"],
            }
        )
    total = sum((Decimal(r["compensation_cny"]) for r in rows), Decimal("0.00"))
    return {
        "from": start,
        "to": end,
        "scope": library or "consortium",
        "rows": rows,
        "total_compensation_cny": str(total),
        "definitions": {
            "items_lost_in_payer_custody": "items owned by the payee declared lost (in the "
            "period, by occurred_at, Asia/Shanghai) while the payer was their custodian: "
            "lent from its desk, on its shelf, or shipped by it and never received",
            "compensation_cny": "compensation of disputes resolved in the period with the "
            "payer liable, due to the other party of the dispute",
        },
    }
